//! Turning concrete paths and addresses into profile items that do not churn: per-request file
//! names, ids in paths, ephemeral ports and pod IP changes map to the same item.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Path segments kept at most; deeper directories fold into their ancestor.
pub(crate) const MAX_DEPTH: usize = 8;
/// Ports from here up are ephemeral (Linux's default ip_local_port_range starts at 32768).
pub(crate) const EPHEMERAL_PORT: u16 = 32768;

fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| {
            if [8, 13, 18, 23].contains(&i) {
                c == '-'
            } else {
                c.is_ascii_hexdigit()
            }
        })
}

/// A path segment that is an identifier rather than a name: numbers, hashes, uuids, pids.
pub(crate) fn is_volatile(seg: &str) -> bool {
    let mut run = 0;
    let mut longest = 0;
    for c in seg.chars() {
        run = if c.is_ascii_digit() { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    (!seg.is_empty() && seg.chars().all(|c| c.is_ascii_digit()))
        || is_uuid(seg)
        || (seg.len() >= 8
            && seg.chars().all(|c| c.is_ascii_hexdigit())
            && seg.chars().any(|c| c.is_ascii_digit()))
        || longest >= 5
}

/// The directory a write to `path` counts as: its parent, ids replaced by `*`, at most
/// [`MAX_DEPTH`] levels.
pub(crate) fn write_location(path: &str) -> String {
    let parent = match path.rfind('/') {
        Some(0) => "/",
        Some(i) => &path[..i],
        None => ".",
    };
    generalize_dir(parent)
}

/// Replaces volatile segments with `*` and cuts to [`MAX_DEPTH`] levels.
pub(crate) fn generalize_dir(dir: &str) -> String {
    let segs: Vec<&str> = dir
        .split('/')
        .filter(|s| !s.is_empty())
        .take(MAX_DEPTH)
        .collect();
    if segs.is_empty() {
        return "/".into();
    }
    let parts: Vec<&str> = segs
        .iter()
        .map(|s| if is_volatile(s) { "*" } else { s })
        .collect();
    format!("/{}", parts.join("/"))
}

/// Whether a learned location covers a new one: equal, or a learned `*` segment, or the new one
/// lies below it.
pub(crate) fn location_covers(learned: &str, new: &str) -> bool {
    let l: Vec<&str> = learned.split('/').filter(|s| !s.is_empty()).collect();
    let n: Vec<&str> = new.split('/').filter(|s| !s.is_empty()).collect();
    l.len() <= n.len() && l.iter().zip(&n).all(|(a, b)| *a == "*" || a == b)
}

/// A listening port as a profile item: its number, or `ephemeral` for ports the kernel hands
/// out (port-0 binds). Destination ports of connections are services and stay exact.
pub(crate) fn listen_port(p: u16) -> String {
    if p >= EPHEMERAL_PORT {
        "ephemeral".into()
    } else {
        p.to_string()
    }
}

/// An address as a network, so that peers that move within their subnet (pods rescheduled,
/// load-balanced backends) stay one item: IPv4 /24, IPv6 /64, loopback 127.0.0.0/8.
pub(crate) fn network(addr: &str) -> String {
    match addr.parse::<IpAddr>() {
        Ok(IpAddr::V4(a)) if a.is_loopback() => "127.0.0.0/8".into(),
        Ok(IpAddr::V4(a)) => {
            let o = a.octets();
            format!("{}/24", Ipv4Addr::new(o[0], o[1], o[2], 0))
        }
        Ok(IpAddr::V6(a)) if a.is_loopback() => "::1/128".into(),
        Ok(IpAddr::V6(a)) => {
            let s = a.segments();
            format!("{}/64", Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        Err(_) => addr.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volatile_segments() {
        for v in [
            "123",
            "9f8e7d6c5b4a",
            "5f1b3c1e-8a2d-4c1f-9e7b-2a6d0c3e4f5a",
            "session-12345",
            "20261122",
        ] {
            assert!(is_volatile(v), "{v}");
        }
        for k in ["data", "v1", "cache", "app-2", "deadbeef", "nginx"] {
            assert!(!is_volatile(k), "{k}");
        }
    }

    #[test]
    fn write_locations_fold_ids_and_depth() {
        assert_eq!(
            write_location("/var/lib/app/uploads/123/file.bin"),
            "/var/lib/app/uploads/*"
        );
        assert_eq!(write_location("/tmp/tmpa8Xk2q"), "/tmp");
        assert_eq!(
            write_location("/data/5f1b3c1e-8a2d-4c1f-9e7b-2a6d0c3e4f5a/x"),
            "/data/*"
        );
        assert_eq!(write_location("/a/b/c/d/e/f/g/h/i/j/k"), "/a/b/c/d/e/f/g/h");
        assert_eq!(write_location("/f"), "/");
        assert!(location_covers("/var/lib/app", "/var/lib/app/uploads/*"));
        assert!(location_covers("/data/*", "/data/*"));
        assert!(!location_covers("/var/lib/app", "/var/lib/other"));
        assert!(!location_covers("/var/lib/app/uploads", "/var/lib/app"));
    }

    #[test]
    fn networks_and_ports() {
        assert_eq!(network("10.244.3.17"), "10.244.3.0/24");
        assert_eq!(network("10.244.3.201"), network("10.244.3.17"));
        assert_eq!(network("127.0.0.53"), "127.0.0.0/8");
        assert_eq!(network("2001:db8:1:2:3:4:5:6"), "2001:db8:1:2::/64");
        assert_eq!(listen_port(443), "443");
        assert_eq!(listen_port(51234), "ephemeral");
    }
}
