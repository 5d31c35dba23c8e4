//! The L7 stage: turns captured payload into Hubble L7 flows and removes the payload from
//! every flow that leaves it.

pub mod http;

use webb_proto::extras;
use webb_proto::flow::Flow;

pub use http::{HttpConfig, HttpStage, HttpStats};

/// Counters of the L7 stage itself (the parsers keep their own).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct L7Stats {
    /// Flows whose `webb.v1.FlowExtras` did not decode (passed on without them).
    pub bad_extras: u64,
}

/// Runs every flow of the merged stream through the L7 parsers.
#[derive(Debug)]
pub struct L7Stage {
    http: HttpStage,
    stats: L7Stats,
}

impl L7Stage {
    pub fn new(http: HttpConfig) -> Self {
        L7Stage {
            http: HttpStage::new(http),
            stats: L7Stats::default(),
        }
    }

    pub fn http(&self) -> &HttpStage {
        &self.http
    }

    pub fn stats(&self) -> &L7Stats {
        &self.stats
    }

    /// Appends `flow` (without captured payload) and then the L7 flows it completes to `out`.
    pub fn process(&mut self, mut flow: Flow, out: &mut Vec<Flow>) {
        let start = out.len();
        out.push(Flow::default()); // placeholder, so the packet flow precedes its L7 flows
        match extras::unpack(&flow) {
            Some(Ok(mut x)) => {
                if let Some(payload) = x.payload.take() {
                    self.http.observe(&flow, &payload, out);
                    let rest = (x != Default::default()).then_some(&x);
                    extras::attach(&mut flow, rest);
                } else {
                    self.http.tcp_control(&flow);
                }
            }
            Some(Err(_)) => {
                self.stats.bad_extras += 1;
                extras::strip(&mut flow);
            }
            None => self.http.tcp_control(&flow),
        }
        out[start] = flow;
    }

    /// Forgets idle connections; call when the stream is quiet (`now_ns`: flow time).
    pub fn expire(&mut self, now_ns: i128) {
        self.http.expire(now_ns);
    }
}
