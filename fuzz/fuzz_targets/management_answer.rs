//! RabbitMQ management API answers (queue counts, dead-letter paths): never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = helsemelding_transport_amqp::management::QueueInfo::from_json(data);
});
