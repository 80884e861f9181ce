//! Dropping the capabilities the agent needs only to start: SYS_ADMIN, NET_ADMIN and SETPCAP,
//! from the bounding set first (SETPCAP last: shrinking the bounding set needs it), then from
//! the effective, permitted and inheritable sets.

use std::io;

use crate::sys::check;

const CAP_SETPCAP: u32 = 8;
const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;
/// In dropping order.
const START_CAPS: [u32; 3] = [CAP_SYS_ADMIN, CAP_NET_ADMIN, CAP_SETPCAP];

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

pub fn drop_start_caps() -> io::Result<()> {
    for cap in START_CAPS {
        // SAFETY: prctl with integer arguments.
        check(unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) })?;
    }
    let mut header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: capget writes two CapData for version 3.
    check(unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) })?;
    let mask = !START_CAPS.iter().fold(0u32, |m, &c| m | (1 << c));
    for set in [
        &mut data[0].effective,
        &mut data[0].permitted,
        &mut data[0].inheritable,
    ] {
        *set &= mask;
    }
    // SAFETY: capset reads two CapData for version 3.
    check(unsafe { libc::syscall(libc::SYS_capset, &header, data.as_ptr()) })?;
    Ok(())
}
