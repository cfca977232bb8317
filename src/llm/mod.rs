//! Language models: the model string, and (later) the providers that run it.

pub mod model;
