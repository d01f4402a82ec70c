//! The act engine driven through its real parts: a real SQLite registry, a real `act.db`, and
//! a hand-moved clock for durations.
#![allow(clippy::unwrap_used)]

mod engine {
    mod commands;
    mod health;
    pub mod helpers;
    mod replay;
    mod rules;
}
