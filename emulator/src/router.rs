//! The on-chip network: one router per core plus the two ports, dimension-ordered routes, links
//! of a fixed bandwidth and latency, and input buffers of a fixed depth with credit flow control.
//!
//! A message is a train of packets (its non-zero values plus a tail). Each router has five input
//! buffers (local injection, and one per neighbour) and five outputs (local ejection, and one per
//! neighbour). Every cycle, every output forwards up to `link_bandwidth` packets, oldest first
//! (by injection cycle, then injection order), taken from the heads of the input buffers whose
//! head is ready and routed to it, and only while the buffer at the far end of the link has room
//! (`buffer_depth` packets, counting those still on the link). A forwarded packet is ready at the
//! next router `hop` cycles later. Ejection and injection buffers are unbounded (the interfaces
//! write into and read from core memory). Decisions of a cycle use the buffer state at the start
//! of the cycle, so a slot freed in cycle `n` can be taken in cycle `n + 1`.
//!
//! Both engines step this one model; see docs/timing-model.md, "Router".

use crate::timing::Cycles;
use serde::Serialize;
use sigchip_isa::Program;

/// Input and output directions of a router.
const LOCAL: usize = 0;
const DIRS: usize = 5;
const DIR_NAMES: [&str; DIRS] = ["local", "west", "east", "north", "south"];

/// One packet in the network.
#[derive(Clone, Copy, Debug)]
struct Packet {
    /// The message (an engine-assigned ID) and whether this packet is its tail.
    msg: u32,
    last: bool,
    route: u16,
    /// Index into `Network::hops` of the router this packet is at.
    hop: u32,
    /// The first cycle it may leave the buffer it is in.
    ready: Cycles,
    /// Arbitration key: injection cycle, then global injection order.
    birth: Cycles,
    seq: u64,
    /// Where it goes from here: the output direction and the buffer it enters there
    /// (`EJECT` when it leaves the network).
    out: u8,
    next: u32,
    /// The packet behind it in its buffer (`NIL`: none).
    behind: u32,
}

/// No packet: the end of a buffer's list.
const NIL: u32 = u32::MAX;

/// What arbitration reads of a buffer's head packet.
#[derive(Clone, Copy, Debug)]
struct Head {
    ready: Cycles,
    /// Output direction, then age (birth cycle, then injection order), in one comparable key.
    key: u128,
    next: u32,
}

impl Head {
    const EMPTY: Head = Head {
        ready: Cycles::MAX,
        key: 0,
        next: 0,
    };

    fn of(p: &Packet) -> Head {
        debug_assert!(p.birth < 1 << 56, "birth cycles fit 56 bits");
        Head {
            ready: p.ready,
            key: (p.out as u128) << 120 | (p.birth as u128) << 64 | p.seq as u128,
            next: p.next,
        }
    }

    fn out(key: u128) -> usize {
        (key >> 120) as usize
    }
}

/// `Packet::next` of a packet that leaves the network at this router.
const EJECT: u32 = u32::MAX;

/// A decided move of one step: (input buffer, link).
type Move = (usize, usize);

/// Load and stalls of one link (a router output), over a run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LinkStats {
    /// `(x, y)` of the router the link leaves (`x = -1`: the input port's; `x = width`: the
    /// output port's), and the direction it leaves by.
    pub from: (i32, i32),
    pub dir: &'static str,
    /// Packets that crossed the link.
    pub packets: u64,
    /// Packet-cycles a ready packet waited for the link because others took it (contention).
    pub stall_contention: u64,
    /// Packet-cycles a ready packet waited for room in the buffer at the far end (backpressure).
    pub stall_backpressure: u64,
}

/// A message whose tail left the network at its destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delivery {
    pub msg: u32,
    pub route: u16,
    /// The cycle its tail was ejected; the destination can use it from the next cycle on.
    pub cycle: Cycles,
}

/// The network of one program.
#[derive(Clone)]
pub struct Network {
    width: i32,
    height: i32,
    hop: Cycles,
    bandwidth: u32,
    depth: u32,
    /// Per route: the router index of its source.
    sources: Vec<usize>,
    /// Per route and position along it: the output direction and the next buffer
    /// ([`Network::next_hop`]), all routes end to end; `hop_start[route]` is the source's entry.
    hops: Vec<(u8, u32)>,
    hop_start: Vec<u32>,
    /// Per (router, input direction).
    /// Per (router, input direction): its first and last packet (`NIL` when empty), as
    /// indices into `slab`, linked front to back through `Packet::behind`. A packet stays in
    /// one slot from injection to ejection; moving it relinks it.
    queues: Vec<(u32, u32)>,
    slab: Vec<Packet>,
    free: Vec<u32>,
    /// Per (router, input direction): queued packets plus packets on the link towards it.
    occupancy: Vec<u32>,
    /// Routers with a non-empty input buffer, and a bit per non-empty input buffer of each.
    active: Vec<usize>,
    in_active: Vec<bool>,
    nonempty: Vec<u8>,
    /// Per (router, input direction): what a step needs of the head packet (`ready ==
    /// Cycles::MAX`: empty). Mirrors `queues[q].front()`, so deciding reads one flat array.
    head: Vec<Head>,
    packets: u64,
    seq: u64,
    /// Per (router, output direction).
    stats: Vec<LinkStats>,
    /// Per (router, input direction): the largest occupancy seen.
    pub max_occupancy: Vec<u32>,
    /// When set, every change of a buffer's occupancy: (cycle, router, input direction, new
    /// occupancy), for waveforms.
    pub trace: Option<Vec<(Cycles, usize, usize, u32)>>,
    /// When set, every packet crossing a link: (cycle, router, output direction).
    pub link_trace: Option<Vec<(Cycles, usize, usize)>>,
    /// When set, the traces keep only these cycles.
    pub trace_window: Option<(Cycles, Cycles)>,
    /// The earliest ready cycle of any buffer head (`None`: the network is empty).
    next_ready: Option<Cycles>,
    /// Scratch space of [`Network::step`].
    moves: Vec<Move>,
}

impl Network {
    /// The network of a program's chip, with a path per route.
    pub fn new(p: &Program) -> Network {
        let paths = p.routes.iter().map(|r| p.path(r)).collect();
        Network::with_paths(
            (p.chip.grid.width, p.chip.grid.height),
            p.chip.costs.hop,
            p.chip.router,
            paths,
        )
    }

    /// A network of a `width x height` grid (plus the ports west of (0, 0) and east of
    /// (width - 1, 0)) whose routes follow `paths` (grid positions, source first, one step
    /// apart).
    pub fn with_paths(
        (width, height): (u16, u16),
        hop: u32,
        router: sigchip_isa::chip::Router,
        paths: Vec<Vec<(i32, i32)>>,
    ) -> Network {
        let (width, height) = (width as i32, height as i32);
        let routers = ((width + 2) * height) as usize;
        let index = |(x, y): (i32, i32)| ((x + 1) + (width + 2) * y) as usize;
        let paths: Vec<Vec<usize>> = paths
            .into_iter()
            .map(|p| p.into_iter().map(index).collect())
            .collect();
        let mut hops = Vec::new();
        let mut hop_start = Vec::new();
        for path in &paths {
            hop_start.push(hops.len() as u32);
            hops.extend((0..path.len()).map(|at| next_hop(width, path, at)));
        }
        let stats = (0..routers * DIRS)
            .map(|i| {
                let r = (i / DIRS) as i32;
                LinkStats {
                    from: (r % (width + 2) - 1, r / (width + 2)),
                    dir: DIR_NAMES[i % DIRS],
                    ..Default::default()
                }
            })
            .collect();
        Network {
            width,
            height,
            hop: hop as Cycles,
            bandwidth: router.link_bandwidth.max(1),
            depth: router.buffer_depth.max(1),
            sources: paths.iter().map(|p| p[0]).collect(),
            hops,
            hop_start,
            queues: vec![(NIL, NIL); routers * DIRS],
            slab: Vec::new(),
            free: Vec::new(),
            occupancy: vec![0; routers * DIRS],
            active: Vec::new(),
            in_active: vec![false; routers],
            nonempty: vec![0; routers],
            head: vec![Head::EMPTY; routers * DIRS],
            packets: 0,
            seq: 0,
            stats,
            max_occupancy: vec![0; routers * DIRS],
            trace: None,
            link_trace: None,
            trace_window: None,
            next_ready: None,
            moves: Vec::new(),
        }
    }

    /// Whether any packet is in the network.
    pub fn is_empty(&self) -> bool {
        self.packets == 0
    }

    /// Packets in the network.
    pub fn len(&self) -> u64 {
        self.packets
    }

    /// Puts a message of `packets` packets on `route`: packet `k` (from 0) is ready at the
    /// source's router at `first + k * spacing`.
    pub fn inject(&mut self, route: u16, msg: u32, packets: u64, first: Cycles, spacing: Cycles) {
        let src = self.sources[route as usize];
        let q = src * DIRS + LOCAL;
        let hop = self.hop_start[route as usize];
        let (out, next) = self.hops[hop as usize];
        let was_empty = self.queues[q].0 == NIL;
        if was_empty {
            self.next_ready = Some(self.next_ready.map_or(first, |n| n.min(first)));
        }
        for k in 0..packets {
            let ready = first + k * spacing;
            let packet = Packet {
                msg,
                last: k + 1 == packets,
                route,
                hop,
                ready,
                birth: ready,
                seq: self.seq,
                out,
                next,
                behind: NIL,
            };
            let slot = match self.free.pop() {
                Some(i) => {
                    self.slab[i as usize] = packet;
                    i
                }
                None => {
                    self.slab.push(packet);
                    (self.slab.len() - 1) as u32
                }
            };
            self.push(q, slot);
            self.seq += 1;
        }
        if was_empty {
            self.head[q] = Head::of(&self.slab[self.queues[q].0 as usize]);
        }
        self.packets += packets;
        self.occupancy[q] += packets as u32;
        self.note(q, first);
        self.mark(q);
    }

    /// Appends the packet in `slot` to buffer `q`.
    #[inline]
    fn push(&mut self, q: usize, slot: u32) {
        self.slab[slot as usize].behind = NIL;
        match self.queues[q] {
            (NIL, _) => self.queues[q] = (slot, slot),
            (_, last) => {
                self.slab[last as usize].behind = slot;
                self.queues[q].1 = slot;
            }
        }
    }

    /// Marks buffer `q` non-empty (its router is active while any of its buffers is).
    #[inline]
    fn mark(&mut self, q: usize) {
        let r = q / DIRS;
        if !self.in_active[r] {
            self.in_active[r] = true;
            self.active.push(r);
        }
        self.nonempty[r] |= 1 << (q % DIRS);
    }

    /// The next cycle at or after `now` at which stepping can change anything (`None` when the
    /// network is empty): a buffer head becomes ready.
    pub fn next_event(&self, now: Cycles) -> Option<Cycles> {
        self.next_ready.map(|n| n.max(now))
    }

    /// One cycle of every router. Returns the messages whose tails were ejected.
    pub fn step(&mut self, now: Cycles) -> Vec<Delivery> {
        let mut delivered = Vec::new();
        if self.next_event(now).is_none_or(|n| n > now) {
            return delivered;
        }
        // Decide on the state at the start of the cycle, then move. `next` collects the
        // earliest cycle anything can happen after this one.
        let mut next = Cycles::MAX;
        let mut moves = std::mem::take(&mut self.moves);
        moves.clear();
        for &r in &self.active {
            // Ready heads of this router's buffers (at most one per buffer), by output, oldest
            // first: an insertion sort of at most five keys.
            let mut heads = [(0u128, 0u32, 0usize); DIRS];
            let mut n = 0;
            let mut bits = self.nonempty[r];
            while bits != 0 {
                let d = bits.trailing_zeros() as usize;
                bits &= bits - 1;
                let q = r * DIRS + d;
                let h = &self.head[q];
                if h.ready <= now {
                    let mut i = n;
                    while i > 0 && heads[i - 1].0 > h.key {
                        heads[i] = heads[i - 1];
                        i -= 1;
                    }
                    heads[i] = (h.key, h.next, q);
                    n += 1;
                } else {
                    next = next.min(h.ready);
                }
            }
            let mut i = 0;
            while i < n {
                let out = Head::out(heads[i].0);
                let link = r * DIRS + out;
                let mut sent = 0u32;
                while i < n && Head::out(heads[i].0) == out {
                    let (_, to, q) = heads[i];
                    i += 1;
                    if sent == self.bandwidth {
                        self.stats[link].stall_contention += 1;
                        next = next.min(now + 1);
                        continue;
                    }
                    // One upstream link feeds each buffer, so this output is the only one
                    // filling it this cycle.
                    if to != EJECT && self.occupancy[to as usize] + sent >= self.depth {
                        self.stats[link].stall_backpressure += 1;
                        next = next.min(now + 1);
                        continue;
                    }
                    sent += 1;
                    moves.push((q, link));
                }
            }
        }
        let tracing = self.link_trace.is_some();
        for &(q, link) in &moves {
            let slot = self.queues[q].0;
            let behind = self.slab[slot as usize].behind;
            self.queues[q].0 = behind;
            if behind == NIL {
                self.queues[q].1 = NIL;
                self.head[q] = Head::EMPTY;
                self.nonempty[q / DIRS] &= !(1 << (q % DIRS));
            } else {
                let h = &self.slab[behind as usize];
                self.head[q] = Head::of(h);
                next = next.min(h.ready.max(now + 1));
            }
            self.occupancy[q] -= 1;
            self.note(q, now);
            self.stats[link].packets += 1;
            if tracing {
                let keep = self.trace_window.is_none_or(|(a, b)| (a..b).contains(&now));
                if let Some(t) = self.link_trace.as_mut().filter(|_| keep) {
                    t.push((now, link / DIRS, link % DIRS));
                }
            }
            let p = &mut self.slab[slot as usize];
            if p.next == EJECT {
                self.free.push(slot);
                self.packets -= 1;
                if p.last {
                    delivered.push(Delivery {
                        msg: p.msg,
                        route: p.route,
                        cycle: now,
                    });
                }
                continue;
            }
            let nq = p.next as usize;
            p.hop += 1;
            p.ready = now + self.hop;
            (p.out, p.next) = self.hops[p.hop as usize];
            if self.queues[nq].0 == NIL {
                next = next.min(p.ready);
                self.head[nq] = Head::of(p);
            }
            self.push(nq, slot);
            self.occupancy[nq] += 1;
            self.note(nq, now);
            self.mark(nq);
        }
        self.moves = moves;
        if self.active.iter().any(|&r| self.nonempty[r] == 0) {
            let (nonempty, in_active) = (&self.nonempty, &mut self.in_active);
            self.active.retain(|&r| {
                in_active[r] = nonempty[r] != 0;
                in_active[r]
            });
        }
        self.next_ready = (self.packets > 0).then_some(next);
        delivered
    }

    #[inline]
    fn note(&mut self, q: usize, now: Cycles) {
        let o = self.occupancy[q];
        if o > self.max_occupancy[q] {
            self.max_occupancy[q] = o;
        }
        if self.trace.is_some() {
            self.note_trace(q, now, o);
        }
    }

    #[cold]
    fn note_trace(&mut self, q: usize, now: Cycles, o: u32) {
        let keep = self.trace_window.is_none_or(|(a, b)| (a..b).contains(&now));
        if let Some(t) = self.trace.as_mut().filter(|_| keep) {
            t.push((now, q / DIRS, q % DIRS, o));
        }
    }

    /// Adds what `other`, a copy of this network taken when its link statistics were `since`,
    /// counted after that: link loads and stalls, and the largest buffer occupancies.
    pub fn absorb(&mut self, other: &Network, since: &[LinkStats]) {
        for ((s, o), b) in self.stats.iter_mut().zip(&other.stats).zip(since) {
            s.packets += o.packets - b.packets;
            s.stall_contention += o.stall_contention - b.stall_contention;
            s.stall_backpressure += o.stall_backpressure - b.stall_backpressure;
        }
        for (m, o) in self.max_occupancy.iter_mut().zip(&other.max_occupancy) {
            *m = (*m).max(*o);
        }
    }

    /// Statistics of every link, in a fixed order.
    pub fn all_link_stats(&self) -> &[LinkStats] {
        &self.stats
    }

    /// Statistics of every link that carried a packet or stalled one.
    pub fn link_stats(&self) -> Vec<LinkStats> {
        self.stats
            .iter()
            .filter(|s| s.packets > 0 || s.stall_contention > 0 || s.stall_backpressure > 0)
            .cloned()
            .collect()
    }

    /// Grid position of a router index (`x = -1` and `x = width` are the ports).
    pub fn position(&self, router: usize) -> (i32, i32) {
        let w = self.width + 2;
        (router as i32 % w - 1, router as i32 / w)
    }

    /// Number of routers, ports included.
    pub fn routers(&self) -> usize {
        ((self.width + 2) * self.height) as usize
    }

    /// Name of an input direction.
    pub fn dir_name(d: usize) -> &'static str {
        DIR_NAMES[d]
    }
}

/// The output direction a packet at position `at` of `path` (router indices of a grid
/// `width` routers wide, ports included) leaves by, and the buffer (router x 5 + input
/// direction) it enters ([`EJECT`] when it leaves the network there).
fn next_hop(width: i32, path: &[usize], at: usize) -> (u8, u32) {
    let here = path[at];
    let Some(&next) = path.get(at + 1) else {
        return (LOCAL as u8, EJECT);
    };
    let w = (width + 2) as usize;
    // West 1, east 2, north 3, south 4: the output towards the neighbour and the input the
    // neighbour receives it on (the opposite side).
    let (out, inp) = if next == here + 1 {
        (2, 1)
    } else if next + 1 == here {
        (1, 2)
    } else if next == here + w {
        (4, 3)
    } else {
        debug_assert_eq!(next + w, here, "dimension-ordered paths move one router");
        (3, 4)
    };
    (out, (next * DIRS + inp) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 4 x 2 grid with routes along row 0 between the given x positions, with link latency
    /// `hop` and buffers of `depth`.
    fn network(routes: &[(i32, i32)], hop: u32, depth: u32) -> Network {
        let paths = routes
            .iter()
            .map(|&(a, b)| (a..=b).map(|x| (x, 0)).collect())
            .collect();
        let router = sigchip_isa::chip::Router {
            link_bandwidth: 1,
            buffer_depth: depth,
        };
        Network::with_paths((4, 2), hop, router, paths)
    }

    /// Steps until empty; every delivery with its cycle.
    fn drain(n: &mut Network) -> Vec<Delivery> {
        let mut out = Vec::new();
        let mut now = 0;
        while let Some(t) = n.next_event(now) {
            out.extend(n.step(t));
            now = t + 1;
        }
        out
    }

    fn link<'a>(n: &'a Network, from: (i32, i32), dir: &str) -> &'a LinkStats {
        n.stats
            .iter()
            .find(|s| s.from == from && s.dir == dir)
            .expect("a link")
    }

    #[test]
    fn an_uncontended_message_takes_its_packets_plus_its_hops() {
        // 5 packets from the first at cycle 10, two hops of 3 cycles: the tail leaves at 14.
        let mut n = network(&[(0, 2)], 3, 4);
        n.inject(0, 7, 5, 10, 1);
        let d = drain(&mut n);
        assert_eq!(
            d,
            [Delivery {
                msg: 7,
                route: 0,
                cycle: 14 + 2 * 3
            }]
        );
        assert!(n.is_empty());
        assert_eq!(link(&n, (0, 0), "east").packets, 5);
        assert_eq!(link(&n, (1, 0), "east").packets, 5);
        assert_eq!(link(&n, (2, 0), "local").packets, 5);
    }

    #[test]
    fn contending_packets_go_oldest_first_and_stall() {
        // A: core0 -> core2, B: core1 -> core2, three packets each from cycle 0; they share
        // the link (1, 0) -> (2, 0). Worked cycle by cycle in docs/timing-model.md.
        let mut n = network(&[(0, 2), (1, 2)], 1, 4);
        n.inject(0, 0, 3, 0, 1);
        n.inject(1, 1, 3, 0, 1);
        let d = drain(&mut n);
        assert_eq!(
            d,
            [
                Delivery {
                    msg: 0,
                    route: 0,
                    cycle: 5
                },
                Delivery {
                    msg: 1,
                    route: 1,
                    cycle: 6
                }
            ]
        );
        let shared = link(&n, (1, 0), "east");
        assert_eq!(
            (
                shared.packets,
                shared.stall_contention,
                shared.stall_backpressure
            ),
            (6, 4, 0)
        );
    }

    #[test]
    fn a_full_buffer_holds_packets_back() {
        // Depth 1: a packet may enter (1, 0) only once the one before it has left.
        let mut n = network(&[(0, 2)], 1, 1);
        n.inject(0, 0, 3, 0, 1);
        assert_eq!(drain(&mut n)[0].cycle, 6);
        let first = link(&n, (0, 0), "east");
        assert_eq!((first.stall_backpressure, first.stall_contention), (2, 0));
        // With room for four, the same train arrives at 2 + 2 hops.
        let mut n = network(&[(0, 2)], 1, 4);
        n.inject(0, 0, 3, 0, 1);
        assert_eq!(drain(&mut n)[0].cycle, 4);
        assert_eq!(n.max_occupancy.iter().max(), Some(&3));
    }
}
