//! Serde helpers.

use serde::{Deserialize, Deserializer};

/// For PATCH fields that can be cleared: absent is `None`, `null` is `Some(None)`.
pub fn double_option<'de, T, D>(de: D) -> Result<Option<Option<T>>, D::Error>
where
    T: Deserialize<'de>,
    D: Deserializer<'de>,
{
    Option::<T>::deserialize(de).map(Some)
}
