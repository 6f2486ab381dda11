//! A `Transport` written outside the crate, with nothing but its public
//! API: an in-memory queue whose deliveries carry a token of its own. It
//! shows the traits can be implemented elsewhere, and that a token only
//! settles on the transport that made it.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use helsemelding_transport::local::LocalTransport;
use helsemelding_transport::{
    Capabilities, Delivery, DeliveryToken, Error, Message, Outcome, Receiver, Sender, Transport,
};

type Queues = Arc<Mutex<HashMap<String, VecDeque<Message>>>>;

#[derive(Default)]
struct Memory {
    queues: Queues,
}

/// The in-memory token: which message of which queue.
#[derive(Debug)]
struct MemoryToken {
    queue: String,
    index: u64,
}

struct MemorySender {
    queues: Queues,
    queue: String,
}

struct MemoryReceiver {
    queues: Queues,
    queue: String,
    held: HashMap<u64, Message>,
    next: u64,
}

#[async_trait]
impl Transport for Memory {
    async fn sender(&self, queue: &str) -> Result<Box<dyn Sender>, Error> {
        Ok(Box::new(MemorySender {
            queues: Arc::clone(&self.queues),
            queue: queue.to_owned(),
        }))
    }

    async fn receiver(&self, queue: &str, _credit: u32) -> Result<Box<dyn Receiver>, Error> {
        Ok(Box::new(MemoryReceiver {
            queues: Arc::clone(&self.queues),
            queue: queue.to_owned(),
            held: HashMap::new(),
            next: 0,
        }))
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::NONE.with_release()
    }

    async fn close(&self) -> Result<(), Error> {
        Ok(())
    }
}

#[async_trait]
impl Sender for MemorySender {
    async fn send(&mut self, message: Message) -> Result<Outcome, Error> {
        let mut queues = self.queues.lock().unwrap();
        queues
            .entry(self.queue.clone())
            .or_default()
            .push_back(message);
        Ok(Outcome::Accepted)
    }

    async fn close(self: Box<Self>) -> Result<(), Error> {
        Ok(())
    }
}

impl MemoryReceiver {
    fn take(&mut self, delivery: &Delivery) -> Result<Message, Error> {
        let lost = || Error::DeliveryLost {
            queue: self.queue.clone(),
        };
        let Some(token) = delivery.token().downcast_ref::<MemoryToken>() else {
            return Err(Error::Receive {
                queue: self.queue.clone(),
                reason: "delivery came from another transport".into(),
            });
        };
        if token.queue != self.queue {
            return Err(lost());
        }
        self.held.remove(&token.index).ok_or_else(lost)
    }
}

#[async_trait]
impl Receiver for MemoryReceiver {
    async fn receive(&mut self, _within: Duration) -> Result<Option<Delivery>, Error> {
        let message = self
            .queues
            .lock()
            .unwrap()
            .get_mut(&self.queue)
            .and_then(VecDeque::pop_front);
        Ok(message.map(|message| {
            self.next += 1;
            self.held.insert(self.next, message.clone());
            let token = DeliveryToken::new(MemoryToken {
                queue: self.queue.clone(),
                index: self.next,
            });
            Delivery::new(message, 0, true, self.queue.clone(), token)
        }))
    }

    async fn accept(&mut self, delivery: &Delivery) -> Result<(), Error> {
        self.take(delivery).map(drop)
    }

    async fn release(&mut self, delivery: &Delivery) -> Result<(), Error> {
        let message = self.take(delivery)?;
        let mut queues = self.queues.lock().unwrap();
        queues
            .entry(self.queue.clone())
            .or_default()
            .push_front(message);
        Ok(())
    }

    async fn reject(&mut self, delivery: &Delivery, _reason: &str) -> Result<(), Error> {
        self.take(delivery).map(drop)
    }

    async fn close(self: Box<Self>) -> Result<(), Error> {
        Ok(())
    }
}

#[tokio::test]
async fn a_transport_from_another_crate_sends_receives_and_settles() {
    let transport: Arc<dyn Transport> = Arc::new(Memory::default());
    let mut sender = transport.sender("q").await.unwrap();
    let sent = Message::new(b"hello".to_vec()).with_property("fromHerId", "91462");
    assert_eq!(sender.send(sent.clone()).await.unwrap(), Outcome::Accepted);
    let mut receiver: Box<dyn Receiver> = transport.receiver("q", 1).await.unwrap();
    let first = receiver.receive(Duration::ZERO).await.unwrap().unwrap();
    assert_eq!(first.message, sent);
    assert_eq!(
        format!("{:?}", first.token()),
        r#"MemoryToken { queue: "q", index: 1 }"#
    );
    receiver.release(&first).await.unwrap();
    assert!(matches!(
        receiver.accept(&first).await,
        Err(Error::DeliveryLost { .. })
    ));
    let again = receiver.receive(Duration::ZERO).await.unwrap().unwrap();
    receiver.accept(&again).await.unwrap();
    assert!(receiver.receive(Duration::ZERO).await.unwrap().is_none());
    assert!(transport.capabilities().releases);
    assert!(!transport.capabilities().counts_deliveries);
}

#[tokio::test]
async fn a_token_settles_only_on_the_transport_that_made_it() {
    let dir = tempfile::tempdir().unwrap();
    let local = LocalTransport::open(dir.path().join("queues.sqlite")).unwrap();
    let memory = Memory::default();
    for transport in [&local as &dyn Transport, &memory] {
        let mut sender = transport.sender("q").await.unwrap();
        sender.send(Message::new(b"x".to_vec())).await.unwrap();
    }
    let mut from_local = local.receiver("q", 1).await.unwrap();
    let mut from_memory = memory.receiver("q", 1).await.unwrap();
    let local_delivery = from_local
        .receive(Duration::from_secs(5))
        .await
        .unwrap()
        .unwrap();
    let memory_delivery = from_memory.receive(Duration::ZERO).await.unwrap().unwrap();
    assert!(matches!(
        from_memory.accept(&local_delivery).await,
        Err(Error::Receive { .. })
    ));
    assert!(matches!(
        from_local.accept(&memory_delivery).await,
        Err(Error::Receive { .. })
    ));
    from_local.accept(&local_delivery).await.unwrap();
    from_memory.accept(&memory_delivery).await.unwrap();
    assert_eq!(local.message_count("q").await.unwrap(), 0);
    let promised = local.capabilities();
    assert!(promised.counts_deliveries && promised.rejects_to_dead_letter);
    assert_eq!(from_local.capabilities(), promised);
}
