//! Group commit for the accept path: concurrent `POST /v1/messages` requests are queued and
//! written by a few writer tasks, each taking everything queued (up to a batch) into one
//! transaction. One commit then pays for many messages; an idle system still writes each
//! request at once (no waiting to fill a batch).

use crate::handler::{AcceptRequest, Accepted, CommandError, CommandHandler};
use std::sync::Arc;
use tokio::sync::{Mutex, mpsc, oneshot};

type Job = (
    AcceptRequest,
    oneshot::Sender<Result<Accepted, CommandError>>,
);

#[derive(Clone)]
pub struct AcceptBatcher {
    queue: mpsc::Sender<Job>,
}

impl AcceptBatcher {
    /// Starts `writers` writer tasks. They stop when the last `AcceptBatcher` clone is dropped.
    pub fn start(handler: CommandHandler, writers: usize, max_batch: usize) -> Self {
        let (queue, rx) = mpsc::channel::<Job>(max_batch * writers * 2);
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..writers.max(1) {
            tokio::spawn(write_batches(handler.clone(), rx.clone(), max_batch));
        }
        Self { queue }
    }

    pub async fn accept(&self, request: AcceptRequest) -> Result<Accepted, CommandError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send((request, reply))
            .await
            .map_err(|_| CommandError::Unavailable)?;
        answer.await.map_err(|_| CommandError::Unavailable)?
    }
}

async fn write_batches(
    handler: CommandHandler,
    rx: Arc<Mutex<mpsc::Receiver<Job>>>,
    max_batch: usize,
) {
    let mut batch: Vec<Job> = Vec::with_capacity(max_batch);
    loop {
        {
            // One writer collects at a time; the others write meanwhile.
            let mut rx = rx.lock().await;
            if rx.recv_many(&mut batch, max_batch).await == 0 {
                return;
            }
        }
        let (requests, replies): (Vec<_>, Vec<_>) = batch.drain(..).unzip();
        metrics::histogram!("hermes_accept_batch_size").record(requests.len() as f64);
        let answers = handler.accept_many(requests).await;
        for (reply, answer) in replies.into_iter().zip(answers) {
            // The client may have gone away; its message is stored all the same.
            let _ = reply.send(answer);
        }
    }
}
