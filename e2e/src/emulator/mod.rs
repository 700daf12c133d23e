//! The CNPG emulator (issue 4).

pub mod webhook;
