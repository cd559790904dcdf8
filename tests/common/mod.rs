pub mod functional_model;
