//! Typed IDs. Each prints as the text format writes it (`core3`, `route7`, `layer2`), so
//! disassembly, error messages and reports all name things the same way.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub u16);

        impl $name {
            /// The ID as an index into the arena that owns it.
            pub fn index(self) -> usize {
                self.0 as usize
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "{}"), self.0)
            }
        }
    };
}

id_type!(
    /// A core of the chip grid; index into [`crate::Program::cores`].
    CoreId,
    "core"
);
id_type!(
    /// A route between two endpoints; index into [`crate::Program::routes`].
    RouteId,
    "route"
);
id_type!(
    /// A layer of the network, numbered from 1 (the input is depth 0, not a layer).
    LayerId,
    "layer"
);

impl LayerId {
    /// The layer's depth in the network: layer `n` sits at depth `n` (input = 0).
    pub fn depth(self) -> u16 {
        self.0
    }
}
