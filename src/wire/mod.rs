//! Typed packet views.
