//! Which IP addresses a fetch may connect to. Pure functions: the import check and the
//! transports' connect-time check (after DNS) must agree.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::UrlError;

/// Refuses an address a fetch must not connect to unless local networks are allowed.
pub(crate) fn check_addr(ip: IpAddr, allow_local_network: bool) -> Result<(), UrlError> {
    if !allow_local_network && is_internal(ip) {
        return Err(UrlError::PrivateAddress(ip.to_string()));
    }
    Ok(())
}

/// Addresses a mirror must never be fetched from unless local networks are allowed:
/// everything not plainly global unicast, including IPv6 forms that carry (and route
/// to) an internal IPv4 address.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_internal_v4(v4),
        IpAddr::V6(v6) => is_internal_v6(v6),
    }
}

fn is_internal_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || a == 0 // "this network" 0/8
        || (a == 100 && (64..128).contains(&b)) // carrier-grade NAT 100.64/10
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments 192.0.0/24
        || (a == 192 && b == 0 && c == 2) // documentation TEST-NET-1
        || (a == 198 && b == 51 && c == 100) // documentation TEST-NET-2
        || (a == 203 && b == 0 && c == 113) // documentation TEST-NET-3
        || (a == 192 && b == 88 && c == 99) // 6to4 relay anycast, deprecated
        || (a == 198 && (b & 0xfe) == 18) // benchmarking 198.18/15
        || a >= 240 // reserved 240/4
}

fn is_internal_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    let low_v4 = || Ipv4Addr::from((u32::from(s[6]) << 16) | u32::from(s[7]));
    match s {
        // IPv4-compatible ::/96, which also holds :: and ::1
        [0, 0, 0, 0, 0, 0, _, _] => is_internal_v4(low_v4()),
        // IPv4-mapped ::ffff:0:0/96 and IPv4-translated ::ffff:0:0:0/96
        [0, 0, 0, 0, 0, 0xffff, _, _] | [0, 0, 0, 0, 0xffff, 0, _, _] => is_internal_v4(low_v4()),
        // NAT64 well-known prefix 64:ff9b::/96: the translator connects to the IPv4
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => is_internal_v4(low_v4()),
        // local-use NAT64 64:ff9b:1::/48: a translator of the local network
        [0x64, 0xff9b, 1, ..] => true,
        // 6to4 2002::/16: the IPv4 of the relay end in bits 16..48
        [0x2002, hi, lo, ..] => {
            is_internal_v4(Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo)))
        }
        // IETF special purpose 2001::/23: Teredo 2001::/32, benchmarking, ORCHID…
        [0x2001, b, ..] if b < 0x200 => true,
        // documentation 2001:db8::/32 and 3fff::/20
        [0x2001, 0xdb8, ..] => true,
        [a, ..] if (a & 0xfff0) == 0x3ff0 => true,
        // discard-only 100::/64
        [0x100, 0, 0, 0, ..] => true,
        [a, ..] => {
            (a & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (a & 0xffc0) == 0xfe80 // link-local fe80::/10
                || (a & 0xffc0) == 0xfec0 // site-local fec0::/10, deprecated
                || (a & 0xff00) == 0xff00 // multicast ff00::/8
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v6(s: &str) -> IpAddr {
        IpAddr::V6(s.parse().unwrap())
    }

    #[test]
    fn ipv6_forms_that_embed_an_ipv4_follow_the_ipv4() {
        for (addr, internal) in [
            ("::1", true),
            ("::", true),
            ("::127.0.0.1", true),
            ("::10.0.0.1", true),
            ("::8.8.8.8", false),
            ("::ffff:127.0.0.1", true),
            ("::ffff:169.254.169.254", true),
            ("::ffff:8.8.8.8", false),
            ("::ffff:0:127.0.0.1", true),
            ("::ffff:0:8.8.8.8", false),
            ("64:ff9b::7f00:1", true),
            ("64:ff9b::a9fe:a9fe", true),
            ("64:ff9b::808:808", false),
            ("64:ff9b:1::808:808", true),
            ("2002:7f00:1::", true),
            ("2002:a00:1::1", true),
            ("2002:c0a8:101::", true),
            ("2002:808:808::1", false),
            ("2001:0:4136:e378:8000:63bf:3fff:fdd2", true), // Teredo
            ("2001:0:0:0:0:0:80ff:fffe", true),             // Teredo, client 127.0.0.1
            ("2001:db8::1", true),
            ("2001:10::1", true),
            ("2001:20::1", true),
            ("3fff::1", true),
            ("100::1", true),
            ("fc00::1", true),
            ("fd12:3456::1", true),
            ("fe80::1", true),
            ("fec0::1", true),
            ("ff02::1", true),
            ("2606:4700::1111", false),
            ("2a00:1450:4001::200e", false),
        ] {
            assert_eq!(is_internal(v6(addr)), internal, "{addr}");
        }
    }

    #[test]
    fn ipv4_special_ranges() {
        for (addr, internal) in [
            ("127.0.0.1", true),
            ("10.1.2.3", true),
            ("172.16.0.1", true),
            ("192.168.1.1", true),
            ("169.254.169.254", true),
            ("0.1.2.3", true),
            ("100.64.0.1", true),
            ("100.127.255.255", true),
            ("100.128.0.1", false),
            ("192.0.0.8", true),
            ("192.0.2.1", true),
            ("198.18.0.1", true),
            ("198.19.255.1", true),
            ("198.20.0.1", false),
            ("224.0.0.1", true),
            ("240.0.0.1", true),
            ("255.255.255.255", true),
            ("8.8.8.8", false),
            ("140.82.112.3", false),
        ] {
            let ip = IpAddr::V4(addr.parse().unwrap());
            assert_eq!(is_internal(ip), internal, "{addr}");
            assert_eq!(check_addr(ip, false).is_err(), internal, "{addr}");
            assert_eq!(check_addr(ip, true), Ok(()), "{addr}");
        }
    }
}
