//! End-to-end tests: the real `stdioproxy` daemon, real `stdioproxy-shim`
//! clients and real child processes, in temp dirs.

mod support;

mod clientfit;
mod clientfit_interop;
mod clients;
mod core;
mod hostile;
mod interop;
mod limits;
mod reload;
mod security;
mod supervision;
mod surface;
mod systemd;
