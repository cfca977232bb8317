//! Group commit for the conversation engine.
//!
//! A turn writes four or five times: it takes its contact's lane, claims the waiting messages
//! with its prompt step, stores the reply, records each send and lets the lane go. Written one
//! turn at a time, each of those is a transaction of several statements, and on SQLite every
//! statement is a hand-off to the connection's thread and back, which cost far more CPU than
//! the SQL itself. So turns hand their writes to one writer task per process instead. It
//! applies every request waiting at that moment in one transaction, each kind with a few
//! statements for all of its requests (multi-row inserts, updates over a JSON list of ids), and
//! then answers each request. The more turns are in flight, the more each commit carries; a
//! lone turn waits for no one.
//!
//! If the shared transaction fails, each request is tried again alone, so one bad request
//! cannot fail the others.

use sea_orm::ConnectionTrait;
use tokio::sync::{mpsc, oneshot};

use super::lane::{self, After, Take};
use super::session::Sessions;
use super::{Claim, Prompted, ReplyDraft, Step};
use crate::error::{ApiError, ApiResult};
use crate::store::Store;
use crate::store::entities::{inbound_message as inbound, message};

/// Most requests applied in one transaction.
const MAX_GROUP: usize = 256;

/// Writer tasks on PostgreSQL (see [`Writer::start`]). Fewer tasks carry more requests per
/// commit, so PostgreSQL plans and runs fewer statements per turn: with four it spent about
/// 0.64 ms of CPU per turn, with eight 0.72 ms, at the same latency (BENCHMARKS.md, session 7).
const POSTGRES_WRITERS: usize = 4;

/// The handle turns submit their writes through. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Writer {
    tx: mpsc::Sender<Request>,
}

type Answer<T> = oneshot::Sender<ApiResult<T>>;

enum Request {
    Take(Take, Answer<Option<Vec<inbound::Model>>>),
    Claim(Box<Claim>, Answer<Option<Prompted>>),
    Reply(Box<ReplyDraft>, Answer<Vec<message::Model>>),
    Step(Step, Answer<Option<After>>),
}

impl Writer {
    /// Starts the writer tasks; they run until every handle is dropped.
    ///
    /// SQLite takes one writer at a time, so one task. PostgreSQL commits several transactions
    /// at once, and a commit there is a dozen round trips: with one task a turn's four requests
    /// each waited out a whole commit before their own, which was most of a turn's latency.
    /// Several tasks take turns collecting from one queue, so a request waits for at most a
    /// collection. Their commits touch different contacts' rows; a rare deadlock between two of
    /// them fails one group, whose requests are then tried alone.
    pub fn start(store: Store, sessions: Sessions) -> Self {
        // Each turn waits for its request, so the queue holds at most one per turn in flight.
        let (tx, rx) = mpsc::channel(4 * MAX_GROUP);
        let tasks = match store.db().get_database_backend() {
            sea_orm::DatabaseBackend::Postgres => POSTGRES_WRITERS,
            _ => 1,
        };
        let rx = std::sync::Arc::new(tokio::sync::Mutex::new(rx));
        for _ in 0..tasks {
            tokio::spawn(run(store.clone(), sessions.clone(), rx.clone()));
        }
        Self { tx }
    }

    /// Takes a contact's lane; its waiting messages if we got it, `None` if someone else holds it.
    pub(crate) async fn take(&self, take: Take) -> ApiResult<Option<Vec<inbound::Model>>> {
        self.ask(|a| Request::Take(take, a)).await
    }

    /// Claims a new turn's messages and runs its prompt step; `None` if the claim was lost.
    pub(crate) async fn claim(&self, claim: Claim) -> ApiResult<Option<Prompted>> {
        self.ask(|a| Request::Claim(Box::new(claim), a)).await
    }

    /// Stores a turn's reply parts and moves it to `replied`.
    pub(crate) async fn reply(&self, draft: ReplyDraft) -> ApiResult<Vec<message::Model>> {
        self.ask(|a| Request::Reply(Box::new(draft), a)).await
    }

    /// Records sends, finishes a turn and offers its lane back, as the step asks.
    pub(crate) async fn step(&self, step: Step) -> ApiResult<Option<After>> {
        self.ask(|a| Request::Step(step, a)).await
    }

    async fn ask<T>(&self, request: impl FnOnce(Answer<T>) -> Request) -> ApiResult<T> {
        let (answer, answered) = oneshot::channel();
        self.tx.send(request(answer)).await.map_err(|_| stopped())?;
        answered.await.map_err(|_| stopped())?
    }
}

fn stopped() -> ApiError {
    ApiError::Unavailable(anyhow::anyhow!("the engine's writer stopped"))
}

/// Requests of one kind, and where each one's outcome goes.
type Queue<R, T> = (Vec<R>, Vec<Answer<T>>);

/// The requests of one commit, by kind.
#[derive(Default)]
struct Group {
    takes: Queue<Take, Option<Vec<inbound::Model>>>,
    claims: Queue<Claim, Option<Prompted>>,
    replies: Queue<ReplyDraft, Vec<message::Model>>,
    steps: Queue<Step, Option<After>>,
}

/// What a group's commit produced, in the order of its requests.
struct Outcomes {
    takes: Vec<Option<Vec<inbound::Model>>>,
    claims: Vec<Option<Prompted>>,
    replies: Vec<Vec<message::Model>>,
    steps: Vec<Option<After>>,
}

impl Group {
    fn push(&mut self, request: Request) {
        match request {
            Request::Take(r, a) => push(&mut self.takes, r, a),
            Request::Claim(r, a) => push(&mut self.claims, *r, a),
            Request::Reply(r, a) => push(&mut self.replies, *r, a),
            Request::Step(r, a) => push(&mut self.steps, r, a),
        }
    }

    fn len(&self) -> usize {
        self.takes.0.len() + self.claims.0.len() + self.replies.0.len() + self.steps.0.len()
    }

    /// Applies every request in one transaction.
    async fn apply(&self, store: &Store, sessions: &Sessions) -> ApiResult<Outcomes> {
        let txn = crate::store::begin_write(store.db()).await?;
        if txn.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
            // These statements join a list against tables that grow by the second. A plan
            // PostgreSQL caches for a connection is kept until the table's statistics are next
            // gathered (up to a minute on a busy new database), and one made while a table was
            // nearly empty scans it whole: planned each time instead, they use its indexes.
            // Planning costs little next to the many turns one statement serves.
            txn.execute_unprepared("SET LOCAL plan_cache_mode = force_custom_plan")
                .await?;
        }
        // Steps first: a lane one of them lets go can be taken by a take of the same commit.
        // The other order is as correct (a lane is only let go when nothing waits), just slower.
        let steps = if self.steps.0.is_empty() {
            Vec::new()
        } else {
            super::apply_steps(&txn, &self.steps.0).await?
        };
        let takes = if self.takes.0.is_empty() {
            Vec::new()
        } else {
            lane::take_many(&txn, &self.takes.0).await?
        };
        let claims = if self.claims.0.is_empty() {
            Vec::new()
        } else {
            super::prompt_many(&txn, sessions, &self.claims.0).await?
        };
        let replies = if self.replies.0.is_empty() {
            Vec::new()
        } else {
            super::store_replies(&txn, &self.replies.0).await?
        };
        txn.commit().await?;
        Ok(Outcomes {
            takes,
            claims,
            replies,
            steps,
        })
    }

    fn answer(self, outcomes: Outcomes) {
        answer(self.takes.1, outcomes.takes);
        answer(self.claims.1, outcomes.claims);
        answer(self.replies.1, outcomes.replies);
        answer(self.steps.1, outcomes.steps);
    }

    /// Answers a group of one request with `e`.
    fn fail(self, e: ApiError) {
        if let Some(a) = self.takes.1.into_iter().next() {
            let _ = a.send(Err(e));
        } else if let Some(a) = self.claims.1.into_iter().next() {
            let _ = a.send(Err(e));
        } else if let Some(a) = self.replies.1.into_iter().next() {
            let _ = a.send(Err(e));
        } else if let Some(a) = self.steps.1.into_iter().next() {
            let _ = a.send(Err(e));
        }
    }

    /// One group per request, to try each alone.
    fn split(self) -> Vec<Group> {
        let mut out = Vec::with_capacity(self.len());
        alone(self.takes, |g| &mut g.takes, &mut out);
        alone(self.claims, |g| &mut g.claims, &mut out);
        alone(self.replies, |g| &mut g.replies, &mut out);
        alone(self.steps, |g| &mut g.steps, &mut out);
        out
    }
}

/// Puts each request of `queue` in a group of its own, in the group's `slot` for its kind.
fn alone<R, T>(queue: Queue<R, T>, slot: fn(&mut Group) -> &mut Queue<R, T>, out: &mut Vec<Group>) {
    for (r, a) in queue.0.into_iter().zip(queue.1) {
        let mut g = Group::default();
        push(slot(&mut g), r, a);
        out.push(g);
    }
}

fn push<R, T>(queue: &mut Queue<R, T>, request: R, answer: Answer<T>) {
    queue.0.push(request);
    queue.1.push(answer);
}

fn answer<T>(answers: Vec<Answer<T>>, outcomes: Vec<T>) {
    for (a, o) in answers.into_iter().zip(outcomes) {
        // The turn that asked may be gone (its job was cancelled at shutdown): nothing to do.
        let _ = a.send(Ok(o));
    }
}

async fn run(
    store: Store,
    sessions: Sessions,
    rx: std::sync::Arc<tokio::sync::Mutex<mpsc::Receiver<Request>>>,
) {
    loop {
        let group = {
            let mut rx = rx.lock().await;
            let Some(first) = rx.recv().await else {
                return;
            };
            let mut group = Group::default();
            group.push(first);
            // Whatever arrived while the last commit ran goes into this one.
            while group.len() < MAX_GROUP {
                match rx.try_recv() {
                    Ok(r) => group.push(r),
                    Err(_) => break,
                }
            }
            group
        };
        commit(&store, &sessions, group).await;
    }
}

async fn commit(store: &Store, sessions: &Sessions, group: Group) {
    match group.apply(store, sessions).await {
        Ok(outcomes) => group.answer(outcomes),
        Err(e) if group.len() == 1 => group.fail(e),
        Err(e) => {
            tracing::warn!(error = ?e, requests = group.len(), "engine writes failed together; trying each alone");
            for one in group.split() {
                match one.apply(store, sessions).await {
                    Ok(outcomes) => one.answer(outcomes),
                    Err(e) => one.fail(e),
                }
            }
        }
    }
}
