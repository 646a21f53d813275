//! Enhanced fan-out consumers (register, deregister, describe, list) and stream tags.

use std::collections::BTreeMap;

use super::control::*;
use super::types::*;
use super::Engine;
use crate::catalog::{ConsumerMeta, ConsumerStatus, StreamMeta, StreamStatus};
use crate::error::{Error, Result};
use crate::token::{decode_page, encode_page};
use crate::validate::{self, check_name, validation};

impl Engine {
    fn consumer_out(&self, stream: &str, c: &ConsumerMeta) -> Consumer {
        let stream_arn = self.stream_arn(stream);
        Consumer {
            consumer_name: c.name.clone(),
            consumer_arn: format!("{stream_arn}/consumer/{}:{}", c.name, c.created_ms / 1000),
            consumer_status: c.status,
            consumer_creation_ms: c.created_ms,
            stream_arn,
        }
    }

    /// Resolves a consumer reference to (stream name, consumer name, creation seconds if
    /// the reference is an ARN).
    fn consumer_ref<'a>(
        &self,
        consumer: ConsumerRef<'a>,
    ) -> Result<(&'a str, &'a str, Option<u64>)> {
        match consumer {
            ConsumerRef::Name { stream, consumer_name } => {
                check_name(consumer_name, "consumerName")?;
                Ok((self.resolve(stream)?, consumer_name, None))
            }
            ConsumerRef::Arn(arn) => {
                let invalid = || {
                    validation(
                        &format!("'{arn}'"),
                        "consumerARN",
                        "Member must satisfy regular expression pattern: \
                         ^(arn):aws.*:kinesis:.*:\\d{12}:.*stream\\/[a-zA-Z0-9_.-]+\\/consumer\\/[a-zA-Z0-9_.-]+:[0-9]+",
                    )
                };
                let (stream_arn, rest) = arn.split_once("/consumer/").ok_or_else(invalid)?;
                let (name, secs) = rest.rsplit_once(':').ok_or_else(invalid)?;
                let secs: u64 = secs.parse().map_err(|_| invalid())?;
                check_name(name, "consumerName")?;
                Ok((self.resolve(stream_arn)?, name, Some(secs)))
            }
        }
    }

    /// `RegisterStreamConsumer`: the consumer is CREATING, then ACTIVE.
    pub fn register_stream_consumer(&self, stream: &str, consumer_name: &str) -> Result<Consumer> {
        self.enter()?;
        check_name(consumer_name, "consumerName")?;
        let mut control = self.control();
        let meta = self.meta_for_change(&control, stream)?;
        if matches!(meta.status, StreamStatus::Creating | StreamStatus::Deleting) {
            return Err(self.msg().not_active(&meta.name, meta.status.as_str()));
        }
        if meta.consumers.iter().any(|c| c.name == consumer_name) {
            return Err(Error::ResourceInUse(format!(
                "Consumer {consumer_name} under stream {} under account {} already exists.",
                meta.name, self.inner.config.account_id
            )));
        }
        if meta.consumers.len() >= validate::CONSUMERS_MAX {
            return Err(Error::LimitExceeded(format!(
                "Stream {} under account {} already has 20 registered consumers, the limit.",
                meta.name, self.inner.config.account_id
            )));
        }
        let creating =
            meta.consumers.iter().filter(|c| c.status == ConsumerStatus::Creating).count();
        if creating >= validate::CONSUMERS_CREATING_MAX {
            return Err(Error::LimitExceeded(format!(
                "Stream {} under account {} already has 5 consumers in CREATING state.",
                meta.name, self.inner.config.account_id
            )));
        }
        let name = meta.name.clone();
        let now = self.now();
        let consumer = ConsumerMeta {
            name: consumer_name.to_string(),
            created_ms: now,
            status: ConsumerStatus::Creating,
            status_due_ms: Some(now + self.inner.config.transition_ms),
        };
        let mut catalog = control.catalog.clone();
        catalog.streams.get_mut(&name).expect("looked up above").consumers.push(consumer.clone());
        self.commit_stream(&mut control, catalog, &name)?;
        Ok(self.consumer_out(&name, &consumer))
    }

    fn find_consumer<'m>(
        &self,
        meta: &'m StreamMeta,
        name: &str,
        created_secs: Option<u64>,
    ) -> Result<&'m ConsumerMeta> {
        meta.consumers
            .iter()
            .find(|c| c.name == name && created_secs.is_none_or(|s| s == c.created_ms / 1000))
            .ok_or_else(|| self.msg().consumer_not_found(name, &meta.name))
    }

    /// `DeregisterStreamConsumer`: the consumer is DELETING, then gone.
    pub fn deregister_stream_consumer(&self, consumer: ConsumerRef<'_>) -> Result<()> {
        self.enter()?;
        let (stream, name, secs) = self.consumer_ref(consumer)?;
        let mut control = self.control();
        let meta = self.meta_for_change(&control, stream)?;
        let found = self.find_consumer(meta, name, secs)?.clone();
        if found.status == ConsumerStatus::Deleting {
            return Ok(());
        }
        let stream_name = meta.name.clone();
        let mut catalog = control.catalog.clone();
        let entry = catalog.streams.get_mut(&stream_name).expect("looked up above");
        if let Some(c) = entry.consumers.iter_mut().find(|c| **c == found) {
            c.status = ConsumerStatus::Deleting;
            c.status_due_ms = Some(self.now() + self.inner.config.transition_ms);
        }
        let state = self
            .stream_state(&stream_name)
            .ok_or_else(|| self.msg().stream_not_found(&stream_name))?;
        let mut view = state.write();
        self.commit_and_publish(&mut control, catalog, &state, &mut view)?;
        drop(view);
        drop(control);
        self.advance()
    }

    /// `DescribeStreamConsumer`.
    pub fn describe_stream_consumer(&self, consumer: ConsumerRef<'_>) -> Result<Consumer> {
        self.enter()?;
        let (stream, name, secs) = self.consumer_ref(consumer)?;
        let state = self.stream(stream)?;
        let view = state.read();
        let found = self.find_consumer(&view.meta, name, secs)?;
        Ok(self.consumer_out(&view.meta.name, found))
    }

    /// `ListStreamConsumers`: by name, `max_results` per page (default 100; more behaves
    /// as 100).
    pub fn list_stream_consumers(
        &self,
        stream: &str,
        max_results: Option<u32>,
        next_token: Option<&str>,
    ) -> Result<ListConsumersOutput> {
        self.enter()?;
        let max = page_size(max_results, "maxResults", 100, 100)?;
        let state = self.stream(stream)?;
        let now = self.now();
        let after = match next_token {
            Some(token) => {
                let page: NamePage = decode_page(token, self.key())
                    .filter(|p: &NamePage| p.scope == state.name)
                    .ok_or_else(|| Error::InvalidArgument("Invalid NextToken.".into()))?;
                self.check_page_age(page.issued_ms, now)?;
                Some(page.after)
            }
            None => None,
        };
        let view = state.read();
        let mut consumers: Vec<&ConsumerMeta> = view
            .meta
            .consumers
            .iter()
            .filter(|c| after.as_deref().is_none_or(|a| c.name.as_str() > a))
            .collect();
        consumers.sort_by(|a, b| a.name.cmp(&b.name));
        let more = consumers.len() > max;
        consumers.truncate(max);
        let next_token = match (more, consumers.last()) {
            (true, Some(last)) => Some(encode_page(
                &NamePage { scope: state.name.clone(), after: last.name.clone(), issued_ms: now },
                self.key(),
            )),
            _ => None,
        };
        Ok(ListConsumersOutput {
            consumers: consumers.iter().map(|c| self.consumer_out(&state.name, c)).collect(),
            next_token,
        })
    }

    // ---- tags ----

    /// `AddTagsToStream`: at most 10 per call and 50 per stream; existing keys are
    /// overwritten.
    pub fn add_tags_to_stream(&self, stream: &str, tags: &[(String, String)]) -> Result<()> {
        self.enter()?;
        for (k, v) in tags {
            validate::check_tag(k, Some(v))?;
        }
        let mut control = self.control();
        let meta = self.meta_for_change(&control, stream)?;
        if meta.status == StreamStatus::Deleting {
            return Err(self.msg().not_active(&meta.name, meta.status.as_str()));
        }
        if tags.len() > validate::TAGS_PER_CALL_MAX {
            return Err(Error::InvalidArgument(format!(
                "Failed to add tags to stream {} under account {} because a request can carry \
                 at most 10 tags.",
                meta.name, self.inner.config.account_id
            )));
        }
        let mut merged = meta.tags.clone();
        merged.extend(tags.iter().cloned());
        if merged.len() > validate::TAGS_MAX {
            return Err(Error::InvalidArgument(format!(
                "Failed to add tags to stream {} under account {} because a given stream cannot \
                 have more than 10 tags associated with it.",
                meta.name, self.inner.config.account_id
            )));
        }
        self.set_tags(&mut control, stream, merged)
    }

    /// `RemoveTagsFromStream`: unknown keys are ignored.
    pub fn remove_tags_from_stream(&self, stream: &str, keys: &[String]) -> Result<()> {
        self.enter()?;
        if keys.is_empty() || keys.len() > validate::TAGS_MAX {
            return Err(validation(
                &format!("'[{}]'", keys.join(", ")),
                "tagKeys",
                if keys.is_empty() {
                    "Member must have length greater than or equal to 1"
                } else {
                    "Member must have length less than or equal to 50"
                },
            ));
        }
        for k in keys {
            validate::check_tag(k, None)?;
        }
        let mut control = self.control();
        let meta = self.meta_for_change(&control, stream)?;
        if meta.status == StreamStatus::Deleting {
            return Err(self.msg().not_active(&meta.name, meta.status.as_str()));
        }
        let mut tags = meta.tags.clone();
        for k in keys {
            tags.remove(k);
        }
        self.set_tags(&mut control, stream, tags)
    }

    fn set_tags(
        &self,
        control: &mut super::Control,
        stream: &str,
        tags: BTreeMap<String, String>,
    ) -> Result<()> {
        let name = self.meta_for_change(control, stream)?.name.clone();
        let mut catalog = control.catalog.clone();
        catalog.streams.get_mut(&name).expect("looked up above").tags = tags;
        self.commit_stream(control, catalog, &name)
    }

    /// `ListTagsForStream`: tags in key order after `exclusive_start_tag_key`, at most
    /// `limit` (1..50, default 50).
    pub fn list_tags_for_stream(
        &self,
        stream: &str,
        exclusive_start_tag_key: Option<&str>,
        limit: Option<u32>,
    ) -> Result<ListTagsOutput> {
        self.enter()?;
        if let Some(limit) = limit {
            int_range(limit, "limit", 1, 50)?;
        }
        let limit = limit.unwrap_or(50) as usize;
        let state = self.stream(stream)?;
        let view = state.read();
        let rest: Vec<(String, String)> = view
            .meta
            .tags
            .iter()
            .filter(|(k, _)| exclusive_start_tag_key.is_none_or(|a| k.as_str() > a))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Ok(ListTagsOutput {
            has_more_tags: rest.len() > limit,
            tags: rest.into_iter().take(limit).collect(),
        })
    }
}
