//! Empty library target: lets `monitor` name this crate as a build-dependency so that cargo
//! rebuilds the agent when the kernel programs change. The programs are in the `monitor` binary.
#![no_std]
