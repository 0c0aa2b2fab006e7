//! The embedded queue backend against the contract of `QueueBackend`.

use std::time::Duration;

use super::sqlite::SqliteQueues;
use super::*;

fn message(text: &str) -> NewMessage {
    NewMessage {
        body: Bytes::from(text.to_string()),
        content_type: Some("text/plain".into()),
    }
}

fn options(max: usize) -> ReceiveOptions {
    ReceiveOptions {
        max,
        lease: Duration::from_secs(30),
        ordered: false,
    }
}

fn texts(leased: &[Leased]) -> Vec<String> {
    leased
        .iter()
        .map(|m| String::from_utf8_lossy(&m.body).into_owned())
        .collect()
}

fn queue(name: &str) -> QueueId {
    QueueId::new("app", name).expect("valid names")
}

#[tokio::test(flavor = "multi_thread")]
async fn sent_messages_are_leased_once_and_gone_when_acknowledged() {
    let dir = tempfile::tempdir().expect("temp dir");
    let backend = SqliteQueues::new(dir.path().to_path_buf());
    let q = queue("orders");
    let ids = backend
        .send(&q, vec![message("a"), message("b"), message("c")])
        .await
        .expect("send");
    assert_eq!(ids.len(), 3);
    let first = backend.receive(&q, options(2)).await.expect("receive");
    assert_eq!(texts(&first), ["a", "b"]);
    assert!(first.iter().all(|m| m.attempt == 1));
    assert_eq!(first[0].id, ids[0]);
    // Leased ones are not handed out again while the lease holds.
    let second = backend.receive(&q, options(10)).await.expect("receive");
    assert_eq!(texts(&second), ["c"]);
    let settle = first
        .iter()
        .chain(&second)
        .map(|m| (m.lease.clone(), Settlement::Ack))
        .collect();
    backend.settle(&q, settle).await.expect("settle");
    assert!(backend.receive(&q, options(10)).await.unwrap().is_empty());
    assert_eq!(backend.stats(&q).await.unwrap(), QueueStats::default());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retry_comes_back_after_its_delay_with_the_attempt_counted() {
    let dir = tempfile::tempdir().expect("temp dir");
    let backend = SqliteQueues::new(dir.path().to_path_buf());
    let q = queue("jobs");
    backend.send(&q, vec![message("x")]).await.unwrap();
    let leased = backend.receive(&q, options(1)).await.unwrap();
    backend
        .settle(
            &q,
            vec![(
                leased[0].lease.clone(),
                Settlement::Retry {
                    delay: Duration::from_millis(300),
                },
            )],
        )
        .await
        .unwrap();
    assert!(backend.receive(&q, options(1)).await.unwrap().is_empty());
    tokio::time::sleep(Duration::from_millis(350)).await;
    let again = backend.receive(&q, options(1)).await.unwrap();
    assert_eq!(texts(&again), ["x"]);
    assert_eq!(again[0].attempt, 2);
    assert_eq!(again[0].id, leased[0].id);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_lease_is_delivered_again_and_its_late_settle_changes_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let backend = SqliteQueues::new(dir.path().to_path_buf());
    let q = queue("jobs");
    backend.send(&q, vec![message("x")]).await.unwrap();
    let short = ReceiveOptions {
        lease: Duration::from_millis(100),
        ..options(1)
    };
    let first = backend.receive(&q, short).await.unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    // The consumer is gone; another takes the message.
    let second = backend.receive(&q, options(1)).await.unwrap();
    assert_eq!(second[0].attempt, 2);
    // The first consumer's late ack must not remove the message the second one holds.
    backend
        .settle(&q, vec![(first[0].lease.clone(), Settlement::Ack)])
        .await
        .unwrap();
    assert_eq!(backend.stats(&q).await.unwrap().depth, 1);
    backend
        .settle(&q, vec![(second[0].lease.clone(), Settlement::Ack)])
        .await
        .unwrap();
    assert_eq!(backend.stats(&q).await.unwrap().depth, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn dead_letters_are_kept_listed_and_replayed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let backend = SqliteQueues::new(dir.path().to_path_buf());
    let q = queue("jobs");
    backend
        .send(&q, vec![message("bad"), message("good")])
        .await
        .unwrap();
    let leased = backend.receive(&q, options(2)).await.unwrap();
    backend
        .settle(
            &q,
            vec![
                (
                    leased[0].lease.clone(),
                    Settlement::DeadLetter {
                        reason: "the function answered 400".into(),
                    },
                ),
                (leased[1].lease.clone(), Settlement::Ack),
            ],
        )
        .await
        .unwrap();
    let dead = backend.dead_letters(&q, 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].body, "bad");
    assert_eq!(dead[0].reason, "the function answered 400");
    assert_eq!(dead[0].attempts, 1);
    let stats = backend.stats(&q).await.unwrap();
    assert_eq!((stats.depth, stats.dead), (0, 1));
    assert_eq!(backend.replay(&q, None).await.unwrap(), 1);
    assert!(backend.dead_letters(&q, 10).await.unwrap().is_empty());
    let again = backend.receive(&q, options(5)).await.unwrap();
    assert_eq!(texts(&again), ["bad"]);
    assert_eq!(again[0].attempt, 1, "a replay starts its attempts again");
}

#[tokio::test(flavor = "multi_thread")]
async fn ordered_receive_never_passes_a_message_that_is_not_ready() {
    let dir = tempfile::tempdir().expect("temp dir");
    let backend = SqliteQueues::new(dir.path().to_path_buf());
    let q = queue("fifo");
    backend
        .send(&q, vec![message("1"), message("2"), message("3")])
        .await
        .unwrap();
    let ordered = ReceiveOptions {
        ordered: true,
        ..options(1)
    };
    let first = backend.receive(&q, ordered).await.unwrap();
    assert_eq!(texts(&first), ["1"]);
    // While 1 is leased, nothing else comes out.
    assert!(backend.receive(&q, ordered).await.unwrap().is_empty());
    backend
        .settle(
            &q,
            vec![(
                first[0].lease.clone(),
                Settlement::Retry {
                    delay: Duration::from_millis(200),
                },
            )],
        )
        .await
        .unwrap();
    // While 1 waits for its retry, still nothing.
    assert!(backend.receive(&q, ordered).await.unwrap().is_empty());
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(texts(&backend.receive(&q, ordered).await.unwrap()), ["1"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn ack_and_send_within_a_scope_is_one_transaction() {
    let dir = tempfile::tempdir().expect("temp dir");
    let backend = SqliteQueues::new(dir.path().to_path_buf());
    let input = queue("noise");
    let output = queue("tripled");
    backend.send(&input, vec![message("2")]).await.unwrap();
    let leased = backend.receive(&input, options(1)).await.unwrap();
    assert!(backend.atomic_with(&input, &output));
    backend
        .settle(
            &input,
            vec![(
                leased[0].lease.clone(),
                Settlement::AckAndSend {
                    output: output.clone(),
                    message: message("6"),
                },
            )],
        )
        .await
        .unwrap();
    assert_eq!(backend.stats(&input).await.unwrap().depth, 0);
    assert_eq!(
        texts(&backend.receive(&output, options(5)).await.unwrap()),
        ["6"]
    );
    // Settling the same (gone) lease again sends nothing twice.
    backend
        .settle(
            &input,
            vec![(
                leased[0].lease.clone(),
                Settlement::AckAndSend {
                    output: output.clone(),
                    message: message("6"),
                },
            )],
        )
        .await
        .unwrap();
    assert_eq!(backend.stats(&output).await.unwrap().depth, 1);
    // Across scopes it is refused rather than done half.
    let elsewhere = QueueId::new("fn-other", "tripled").unwrap();
    assert!(!backend.atomic_with(&input, &elsewhere));
}

#[tokio::test(flavor = "multi_thread")]
async fn queues_survive_a_reopen_and_scopes_are_apart() {
    let dir = tempfile::tempdir().expect("temp dir");
    {
        let backend = SqliteQueues::new(dir.path().to_path_buf());
        backend
            .send(&queue("q"), vec![message("kept")])
            .await
            .unwrap();
        backend
            .send(&QueueId::new("fn-b", "q").unwrap(), vec![message("theirs")])
            .await
            .unwrap();
    }
    let backend = SqliteQueues::new(dir.path().to_path_buf());
    assert_eq!(
        texts(&backend.receive(&queue("q"), options(10)).await.unwrap()),
        ["kept"]
    );
    assert!(dir.path().join("app/queue.db").exists());
    assert!(dir.path().join("fn-b/queue.db").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_send_wakes_a_waiting_consumer_at_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let backend = std::sync::Arc::new(SqliteQueues::new(dir.path().to_path_buf()));
    let q = queue("wake");
    let waiter = {
        let backend = backend.clone();
        let q = q.clone();
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            backend.wait(&q, Duration::from_secs(10)).await.unwrap();
            started.elapsed()
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    backend.send(&q, vec![message("now")]).await.unwrap();
    let waited = waiter.await.unwrap();
    assert!(waited < Duration::from_secs(5), "waited {waited:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_registry_refuses_messages_over_the_limit_before_sending() {
    let dir = tempfile::tempdir().expect("temp dir");
    let queues = Queues::new(
        std::sync::Arc::new(SqliteQueues::new(dir.path().to_path_buf())),
        QueueLimits {
            max_message_size: 4,
        },
    );
    let q = queue("small");
    let error = queues
        .send(&q, vec![message("ok"), message("too long")])
        .await
        .unwrap_err();
    assert!(
        matches!(error, QueueError::TooLarge { size: 8, max: 4 }),
        "{error}"
    );
    assert_eq!(queues.backend(&q).stats(&q).await.unwrap().depth, 0);
}
