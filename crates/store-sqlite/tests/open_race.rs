//! Processes that open one new store at the same moment (`listen` starting
//! while an operator's `send` or `outbox list` runs) each get it: none fails
//! with "database is locked" while another creates the schema.

use std::sync::{Arc, Barrier};

use helsemelding_store_sqlite::SqliteStore;

#[test]
fn many_openers_of_a_new_store_all_succeed() {
    for round in 0..40 {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let openers = 8;
        let start = Arc::new(Barrier::new(openers));
        let handles: Vec<_> = (0..openers)
            .map(|_| {
                let (path, start) = (path.clone(), Arc::clone(&start));
                std::thread::spawn(move || {
                    start.wait();
                    SqliteStore::open(&path).map(|_| ())
                })
            })
            .collect();
        for handle in handles {
            if let Err(e) = handle.join().unwrap() {
                panic!("round {round}: {e}");
            }
        }
    }
}
