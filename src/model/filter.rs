//! Placeholder until the filter module lands.
use serde_json::Value;

use crate::model::FieldError;

#[derive(Debug, Clone)]
pub enum Filter {
    And(Vec<Filter>),
    Or(Vec<Filter>),
    Not(Vec<Filter>),
    Condition(Condition),
}

#[derive(Debug, Clone)]
pub struct Condition {
    pub field: String,
    pub operator: Operator,
    pub value: Value,
    pub case_sensitive: bool,
}

#[derive(Debug, Clone, Copy)]
pub enum Operator {
    Eq,
    Contains,
    In,
}

impl Filter {
    pub fn parse(_v: &Value, _path: &str) -> Result<Option<Filter>, FieldError> {
        Ok(None)
    }
}

#[derive(Debug, Clone)]
pub struct Sort {
    pub field: String,
    pub descending: bool,
}

impl Sort {
    pub fn parse(_v: &Value, _path: &str) -> Result<Option<Sort>, FieldError> {
        Ok(None)
    }
}
