//! `webb tui`: a live terminal flow viewer. Split as tokio-console is: [`state`] is the model
//! (updated from the stream and from keys), [`view`] renders it, [`input`] maps keys to
//! actions, and [`run`] wires the network, the keyboard and the frame clock.

pub mod input;
pub mod run;
pub mod state;
pub mod view;
