//! NAT hole punching toward a friend, as c-toxcore 0.2.18 does it
//! (`DHT.c`: `do_NAT`, `punch_holes`, `handle_NATping`).
//!
//! When we cannot reach a friend directly but at least 4 of the nodes
//! closest to it tell us its address (the "returned" addresses of their
//! nodes responses), both sides:
//! 1. send each other NAT ping requests (DHT request 0x20, inner 0xFE)
//!    through those nodes, every 3 s, and answer them;
//! 2. once our ping was answered and theirs arrived within the last 6 s,
//!    send DHT pings to the address most of those nodes agree on: to its one
//!    port if they all agree, otherwise to 48 guesses around the reported
//!    ports (alternating above and below), and after 5 rounds also a sweep
//!    upwards from port 1024. Counters reset after 40 s without punching.
//!
//! A ping that gets through a NAT mapping is answered from the friend's
//! real address, which puts the friend in our list: the direct path.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// How often NAT pings are sent and holes punched (PUNCH_INTERVAL).
pub const PUNCH_INTERVAL: Duration = Duration::from_secs(3);
/// Counters reset after this long without punching (PUNCH_RESET_TIME).
pub const PUNCH_RESET: Duration = Duration::from_secs(40);
/// Ports guessed per round (MAX_PUNCHING_PORTS).
pub const MAX_PUNCHING_PORTS: u32 = 48;
/// Rounds of guesses around the reported ports before also sweeping
/// (MAX_NORMAL_PUNCHING_TRIES).
pub const MAX_NORMAL_PUNCHING_TRIES: u32 = 5;
/// Reported addresses needed, and agreeing ones needed (MAX_FRIEND_CLIENTS / 2).
pub const MIN_REPORTS: usize = 4;

/// Hole-punching state for one friend.
#[derive(Debug, Clone, Default)]
pub struct NatState {
    /// The id our pending NAT ping carries.
    pub ping_id: u64,
    /// When we last sent a NAT ping request.
    pub last_ping: Option<Instant>,
    /// When the friend's NAT ping request last arrived.
    pub received_ping: Option<Instant>,
    /// Our NAT ping was answered: punch at the next chance.
    pub punch_armed: bool,
    /// When we last punched.
    pub last_punch: Option<Instant>,
    /// Rounds punched since the last reset.
    pub tries: u32,
    /// Position in the guesses around the reported ports.
    pub index: u32,
    /// Position in the upward sweep.
    pub sweep: u32,
}

impl NatState {
    /// Whether a NAT ping request is due.
    pub fn ping_due(&self, now: Instant) -> bool {
        self.last_ping.is_none_or(|t| now > t + PUNCH_INTERVAL)
    }

    /// Whether punching is due: our ping was answered, theirs is recent,
    /// and the last round is 3 s old.
    pub fn punch_due(&self, now: Instant) -> bool {
        self.punch_armed
            && self.last_punch.is_none_or(|t| now > t + PUNCH_INTERVAL)
            && self.received_ping.is_some_and(|t| now <= t + 2 * PUNCH_INTERVAL)
    }

    /// The addresses to ping this round, given the reported addresses
    /// (`reports`, at least [`MIN_REPORTS`]); advances the counters. None if
    /// not enough reports agree on one IP.
    pub fn punch(&mut self, now: Instant, reports: &[SocketAddr]) -> Option<Vec<SocketAddr>> {
        let ip = common_ip(reports, MIN_REPORTS)?;
        if self.last_punch.is_none_or(|t| now > t + PUNCH_RESET) {
            self.tries = 0;
            self.index = 0;
            self.sweep = 0;
        }
        self.last_punch = Some(now);
        self.punch_armed = false;
        let ports: Vec<u16> = reports.iter().filter(|a| a.ip() == ip).map(SocketAddr::port).collect();
        let mut targets = Vec::new();
        if ports.iter().all(|p| *p == ports[0]) {
            targets.push(SocketAddr::new(ip, ports[0]));
        } else {
            let n = ports.len() as u32;
            for i in 0..MAX_PUNCHING_PORTS {
                let it = i + self.index;
                let delta = (it / (2 * n)) as i32;
                let delta = if it % 2 == 1 { -delta } else { delta };
                let base = ports[((it / 2) % n) as usize];
                targets.push(SocketAddr::new(ip, (i32::from(base) + delta) as u16));
            }
            self.index += MAX_PUNCHING_PORTS;
        }
        if self.tries > MAX_NORMAL_PUNCHING_TRIES {
            for i in 0..MAX_PUNCHING_PORTS {
                targets.push(SocketAddr::new(ip, 1024u32.wrapping_add(self.sweep + i) as u16));
            }
            self.sweep += MAX_PUNCHING_PORTS / 2;
        }
        self.tries += 1;
        Some(targets)
    }
}

/// The IP that at least `min` of the addresses share, if any.
pub fn common_ip(addrs: &[SocketAddr], min: usize) -> Option<IpAddr> {
    addrs.iter().map(SocketAddr::ip).find(|ip| addrs.iter().filter(|a| a.ip() == *ip).count() >= min)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reports(ports: &[u16]) -> Vec<SocketAddr> {
        ports.iter().map(|p| SocketAddr::from(([203, 0, 113, 9], *p))).collect()
    }

    #[test]
    fn agreeing_reports_give_one_target() {
        let t0 = crate::proto::test_epoch();
        let mut nat = NatState { punch_armed: true, received_ping: Some(t0), ..NatState::default() };
        assert!(nat.punch_due(t0));
        let targets = nat.punch(t0, &reports(&[5000, 5000, 5000, 5000])).unwrap();
        assert_eq!(targets, reports(&[5000]));
        assert!(!nat.punch_due(t0 + PUNCH_INTERVAL), "disarmed until the next NAT ping answer");
    }

    #[test]
    fn differing_ports_are_guessed_around_and_then_swept() {
        let t0 = crate::proto::test_epoch();
        let mut nat = NatState::default();
        let first = nat.punch(t0, &reports(&[5000, 5004, 5000, 5004])).unwrap();
        assert_eq!(first.len(), 48);
        // Alternating above and below the reported ports, widening.
        let ports: Vec<u16> = first.iter().map(SocketAddr::port).take(10).collect();
        assert_eq!(ports, [5000, 5000, 5004, 5004, 5000, 5000, 5004, 5004, 5001, 4999]);
        for round in 1..=6u64 {
            nat.punch(t0 + Duration::from_secs(round), &reports(&[5000, 5004, 5000, 5004])).unwrap();
        }
        let late = nat.punch(t0 + Duration::from_secs(7), &reports(&[5000, 5004, 5000, 5004])).unwrap();
        assert_eq!(late.len(), 96, "guesses plus the sweep from 1024");
        assert!(late[48..].iter().all(|a| a.port() >= 1024));
        // A pause of more than 40 s starts over.
        let again = nat.punch(t0 + Duration::from_secs(60), &reports(&[5000, 5004, 5000, 5004])).unwrap();
        assert_eq!(again, first);
    }

    #[test]
    fn too_few_agreeing_reports_give_nothing() {
        let t0 = crate::proto::test_epoch();
        let mut mixed = reports(&[5000, 5000, 5000]);
        mixed.push(SocketAddr::from(([198, 51, 100, 1], 5000)));
        assert!(NatState::default().punch(t0, &mixed).is_none());
        assert_eq!(common_ip(&mixed, 3), Some(IpAddr::from([203, 0, 113, 9])));
    }
}
