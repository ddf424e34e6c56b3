pub const SAMPLE_NAME: &str = "embedded-sample"; pub const SAMPLE_POSTS_XML: &str = "";
