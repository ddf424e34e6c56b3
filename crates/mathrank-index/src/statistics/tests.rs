//! Live statistics against a clean index, and replicas with different histories.
