//! Joins each answer with its question while streaming.
//!
//! Questions are remembered by id: title, tags and accepted answer in memory, so memory grows
//! with the number of questions, not with the dump's size; bodies in [`QuestionBodies`], which
//! a build spills to disk. Answers that arrive before their question wait until it comes;
//! those whose question never comes are orphans.

use std::collections::{BTreeMap, HashMap};

use crate::Result;
use crate::bodies::QuestionBodies;
use crate::reader::{Post, PostKind};

/// An answer with what the index needs from its question.
#[derive(Debug, Clone, PartialEq)]
pub struct JoinedAnswer {
    pub answer_id: u64,
    pub question_id: u64,
    pub question_title: String,
    pub tags: Vec<String>,
    /// The question's `AcceptedAnswerId` names this answer.
    pub accepted: bool,
    pub votes: i64,
    pub created: i64,
    pub body_html: String,
    /// The question's body: searchable with its answers (never what the model reads as
    /// segment B).
    pub question_body_html: String,
}

impl JoinedAnswer {
    /// An answer with its question, as a live index joins them (the question's accepted
    /// answer decides `accepted`). The build's streaming join gives the same result.
    pub fn from_posts(question: &Post, answer: Post) -> Self {
        Self {
            answer_id: answer.id,
            question_id: question.id,
            question_title: question.title.clone(),
            tags: question.tags.clone(),
            accepted: question.accepted_answer_id == Some(answer.id),
            votes: answer.score,
            created: answer.created,
            body_html: answer.body_html,
            question_body_html: question.body_html.clone(),
        }
    }
}

#[derive(Debug)]
struct QuestionInfo {
    title: String,
    tags: Vec<String>,
    accepted_answer_id: Option<u64>,
    /// The body, when [`QuestionBodies`] does not hold it elsewhere.
    body: Option<String>,
}

/// Bytes of answer bodies that may wait for their question at once. Official dumps list
/// questions before their answers, so little ever waits; a dump that lists answers first, or
/// holds answers to questions that never come, stops growing memory here.
pub const MAX_WAITING_BYTES: usize = 256 << 20;

/// Counts of a finished join.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct JoinSummary {
    pub questions: u64,
    pub answers: u64,
    /// Answers whose question never appeared in the dump.
    pub orphan_answers: u64,
    /// Rows whose Id was seen before (the later one is skipped).
    pub duplicate_ids: u64,
    /// Up to 20 orphan answer ids, for the report.
    pub orphan_examples: Vec<u64>,
    /// Answers dropped because [`MAX_WAITING_BYTES`] of answers were already waiting for
    /// their questions (counted apart from orphans).
    pub dropped_waiting: u64,
    /// Up to 20 of their ids.
    pub dropped_examples: Vec<u64>,
}

/// Streaming question/answer join. Feed posts with [`push`](Self::push), then call
/// [`finish`](Self::finish) to learn about orphans.
#[derive(Debug, Default)]
pub struct AnswerJoiner {
    questions: HashMap<u64, QuestionInfo>,
    waiting: BTreeMap<u64, Vec<Post>>,
    seen_answers: std::collections::HashSet<u64>,
    waiting_bytes: usize,
    /// [`MAX_WAITING_BYTES`], unless set otherwise.
    max_waiting_bytes: Option<usize>,
    bodies: QuestionBodies,
    summary: JoinSummary,
}

impl AnswerJoiner {
    /// A joiner that lets at most `max_waiting_bytes` of answer bodies wait for questions.
    pub fn with_waiting_limit(max_waiting_bytes: usize) -> Self {
        Self { max_waiting_bytes: Some(max_waiting_bytes), ..Self::default() }
    }

    /// A joiner that keeps question bodies in `bodies` (for example spilled to disk).
    pub fn with_bodies(bodies: QuestionBodies) -> Self {
        Self { bodies, ..Self::default() }
    }

    /// Bytes of question bodies spilled to disk so far.
    pub fn spilled_bytes(&self) -> u64 {
        self.bodies.spilled_bytes()
    }

    /// Takes one post and returns the answers that can be joined now (zero, one, or the
    /// answers that were waiting for this question). Fails only when spilled question bodies
    /// cannot be written or read back.
    pub fn push(&mut self, post: Post) -> Result<Vec<JoinedAnswer>> {
        match post.kind {
            PostKind::Question => {
                if self.questions.contains_key(&post.id) || self.seen_answers.contains(&post.id) {
                    self.summary.duplicate_ids += 1;
                    return Ok(Vec::new());
                }
                self.summary.questions += 1;
                let waiting = self.waiting.remove(&post.id).unwrap_or_default();
                self.waiting_bytes -= waiting.iter().map(|answer| answer.body_html.len()).sum::<usize>();
                let mut info = QuestionInfo {
                    title: post.title,
                    tags: post.tags,
                    accepted_answer_id: post.accepted_answer_id,
                    body: None,
                };
                let body = post.body_html;
                let joined =
                    waiting.into_iter().map(|answer| join(&info, post.id, answer, Some(body.clone()))).collect();
                info.body = self.bodies.put(post.id, body)?;
                self.questions.insert(post.id, info);
                Ok(joined)
            }
            PostKind::Answer => {
                if !self.seen_answers.insert(post.id) || self.questions.contains_key(&post.id) {
                    self.summary.duplicate_ids += 1;
                    return Ok(Vec::new());
                }
                let question_id = post.parent_id.unwrap_or_default();
                match self.questions.get(&question_id) {
                    Some(info) => {
                        let spilled = if info.body.is_none() { self.bodies.get(question_id)? } else { None };
                        Ok(vec![join(info, question_id, post, spilled)])
                    }
                    None => {
                        let limit = self.max_waiting_bytes.unwrap_or(MAX_WAITING_BYTES);
                        if self.waiting_bytes + post.body_html.len() > limit {
                            self.summary.dropped_waiting += 1;
                            if self.summary.dropped_examples.len() < 20 {
                                self.summary.dropped_examples.push(post.id);
                            }
                        } else {
                            self.waiting_bytes += post.body_html.len();
                            self.waiting.entry(question_id).or_default().push(post);
                        }
                        Ok(Vec::new())
                    }
                }
            }
        }
    }

    /// Ends the join: answers still waiting are orphans.
    pub fn finish(mut self) -> JoinSummary {
        for answers in self.waiting.values() {
            self.summary.orphan_answers += answers.len() as u64;
            for answer in answers {
                if self.summary.orphan_examples.len() < 20 {
                    self.summary.orphan_examples.push(answer.id);
                }
            }
        }
        self.summary.answers =
            self.seen_answers.len() as u64 - self.summary.orphan_answers - self.summary.dropped_waiting;
        self.summary
    }
}

/// The answer with its question; `spilled` is the question's body when it is not in `question`.
fn join(question: &QuestionInfo, question_id: u64, answer: Post, spilled: Option<String>) -> JoinedAnswer {
    JoinedAnswer {
        question_body_html: spilled.or_else(|| question.body.clone()).unwrap_or_default(),
        answer_id: answer.id,
        question_id,
        question_title: question.title.clone(),
        tags: question.tags.clone(),
        accepted: question.accepted_answer_id == Some(answer.id),
        votes: answer.score,
        created: answer.created,
        body_html: answer.body_html,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn question(id: u64, accepted: Option<u64>) -> Post {
        Post {
            id,
            kind: PostKind::Question,
            parent_id: None,
            accepted_answer_id: accepted,
            title: format!("question {id}"),
            tags: vec!["algebra".into()],
            body_html: format!("body of question {id}"),
            score: 1,
            created: 0,
        }
    }

    fn answer(id: u64, parent: u64) -> Post {
        Post {
            id,
            kind: PostKind::Answer,
            parent_id: Some(parent),
            score: id as i64,
            body_html: format!("answer {id}"),
            ..question(id, None)
        }
    }

    #[test]
    fn a_live_join_equals_the_streaming_one() {
        let mut joiner = AnswerJoiner::default();
        let streamed = joiner.push(question(10, Some(11))).unwrap();
        assert!(streamed.is_empty());
        let streamed = joiner.push(answer(11, 10)).unwrap();
        assert_eq!(streamed, [JoinedAnswer::from_posts(&question(10, Some(11)), answer(11, 10))]);
        assert!(streamed[0].accepted);
    }

    #[test]
    fn spilled_question_bodies_reach_every_answer() {
        let dir = tempfile::tempdir().unwrap();
        // Room for about one body in memory: the rest come back from the file.
        let bodies = QuestionBodies::spill_to(&dir.path().join("spill"), 24).unwrap();
        let mut joiner = AnswerJoiner::with_bodies(bodies);
        let mut joined = Vec::new();
        for q in [10, 20, 30] {
            joined.extend(joiner.push(question(q, None)).unwrap());
        }
        joined.extend(joiner.push(answer(31, 30)).unwrap());
        joined.extend(joiner.push(answer(11, 10)).unwrap());
        joined.extend(joiner.push(answer(21, 20)).unwrap());
        joined.extend(joiner.push(answer(12, 10)).unwrap());
        let bodies: Vec<(u64, &str)> = joined.iter().map(|a| (a.answer_id, a.question_body_html.as_str())).collect();
        assert_eq!(
            bodies,
            [
                (31, "body of question 30"),
                (11, "body of question 10"),
                (21, "body of question 20"),
                (12, "body of question 10")
            ]
        );
        assert!(joiner.spilled_bytes() > 0);
    }

    #[test]
    fn answers_waiting_for_their_question_are_bounded() {
        let mut joiner = AnswerJoiner::with_waiting_limit(50);
        let mut early = |id: u64| {
            let mut post = answer(id, 1);
            post.body_html = "x".repeat(20);
            joiner.push(post).unwrap()
        };
        assert!(early(10).is_empty() && early(11).is_empty());
        assert!(early(12).is_empty(), "the third would pass 50 bytes: dropped");
        let joined = joiner.push(question(1, None)).unwrap();
        assert_eq!(joined.iter().map(|a| a.answer_id).collect::<Vec<_>>(), [10, 11]);
        let summary = joiner.finish();
        assert_eq!((summary.answers, summary.dropped_waiting, summary.dropped_examples), (2, 1, vec![12]));
        assert_eq!(summary.orphan_answers, 0);
    }

    #[test]
    fn joins_in_order_out_of_order_and_reports_orphans() {
        let mut joiner = AnswerJoiner::default();
        let mut joined = Vec::new();
        joined.extend(joiner.push(answer(11, 10)).unwrap());
        assert!(joined.is_empty(), "answer before its question must wait");
        joined.extend(joiner.push(question(10, Some(11))).unwrap());
        joined.extend(joiner.push(answer(12, 10)).unwrap());
        joined.extend(joiner.push(answer(99, 98)).unwrap());
        joined.extend(joiner.push(answer(12, 10)).unwrap());
        let summary = joiner.finish();
        let ids: Vec<(u64, u64, bool)> = joined.iter().map(|a| (a.answer_id, a.question_id, a.accepted)).collect();
        assert_eq!(ids, [(11, 10, true), (12, 10, false)]);
        assert_eq!(joined[0].question_title, "question 10");
        assert_eq!(joined[0].question_body_html, "body of question 10", "an early answer gets the body too");
        assert_eq!(joined[1].question_body_html, "body of question 10");
        assert_eq!(joined[1].votes, 12);
        assert_eq!(summary.questions, 1);
        assert_eq!(summary.answers, 2);
        assert_eq!(summary.orphan_answers, 1);
        assert_eq!(summary.orphan_examples, [99]);
        assert_eq!(summary.duplicate_ids, 1);
    }
}
