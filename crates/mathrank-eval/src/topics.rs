//! ARQMath Task 1 topics (`<Topics><Topic number="A.1"><Title/><Question/><Tags/></Topic>...`).

use std::path::Path;

use quick_xml::events::Event;

use crate::{Error, Result, read_text};

/// One ARQMath Task 1 topic, as the XML holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct Topic {
    pub number: String,
    /// The title: HTML (math in `span.math-container`), with XML entities decoded.
    pub title: String,
    /// The question body: HTML, with XML entities decoded.
    pub question: String,
    pub tags: Vec<String>,
}

/// Reads topics in the ARQMath Task 1 XML format. XML's five named entities and character
/// references are decoded; any other entity is an error (the files declare no DTD).
pub fn read_topics(path: &Path) -> Result<Vec<Topic>> {
    let text = read_text(path)?;
    let invalid = |reason: String| Error::Topics { path: path.display().to_string(), reason };
    let mut reader = quick_xml::Reader::from_str(&text);
    let mut topics = Vec::new();
    let mut current: Option<Topic> = None;
    let mut field: Option<String> = None;
    let mut value = String::new();
    loop {
        let event = reader.read_event().map_err(|err| invalid(format!("not valid XML ({err})")))?;
        match event {
            Event::Start(start) => {
                let name = start.local_name().as_ref().to_owned();
                if name == "Topic" {
                    let number = start
                        .attributes()
                        .flatten()
                        .find(|a| a.key.as_ref() == "number")
                        .map(|a| a.normalized_value(quick_xml::XmlVersion::Implicit1_0).map(|v| v.into_owned()))
                        .transpose()
                        .map_err(|err| invalid(format!("bad number attribute ({err})")))?
                        .ok_or_else(|| invalid("a <Topic> has no number attribute".into()))?;
                    current = Some(Topic { number, title: String::new(), question: String::new(), tags: Vec::new() });
                } else if current.is_some() {
                    field = Some(name);
                    value.clear();
                }
            }
            Event::Text(text) if field.is_some() => value.push_str(&text),
            Event::GeneralRef(reference) if field.is_some() => {
                let name: &str = &reference;
                let resolved = match name {
                    "lt" => '<',
                    "gt" => '>',
                    "amp" => '&',
                    "quot" => '"',
                    "apos" => '\'',
                    other => match reference.resolve_char_ref() {
                        Ok(Some(c)) => c,
                        _ => return Err(invalid(format!("unknown entity &{other};"))),
                    },
                };
                value.push(resolved);
            }
            Event::CData(data) if field.is_some() => value.push_str(&data),
            Event::End(end) => {
                let name = end.local_name().as_ref().to_owned();
                if name == "Topic" {
                    topics.extend(current.take());
                } else if let (Some(topic), Some(open)) = (current.as_mut(), field.as_deref())
                    && open == name
                {
                    match name.as_str() {
                        "Title" => topic.title = value.trim().to_owned(),
                        "Question" => topic.question = value.trim().to_owned(),
                        "Tags" => {
                            topic.tags =
                                value.split(',').map(str::trim).filter(|t| !t.is_empty()).map(str::to_owned).collect()
                        }
                        _ => {}
                    }
                    field = None;
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if topics.is_empty() {
        return Err(invalid("it holds no <Topic> elements".into()));
    }
    Ok(topics)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_arqmath_topics() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("topics.xml");
        std::fs::write(
            &path,
            "<?xml version=\"1.0\" ?>\n<Topics>\n <Topic number=\"A.1\">\n  <Title>Why $x &lt; y$?</Title>\n  <Question>&lt;p&gt;Body &amp;amp; $x$ &#x41;&lt;/p&gt;</Question>\n  <Tags>algebra,inequality</Tags>\n </Topic>\n</Topics>\n",
        )
        .unwrap();
        let topics = read_topics(&path).unwrap();
        assert_eq!(
            topics,
            [Topic {
                number: "A.1".into(),
                title: "Why $x < y$?".into(),
                question: "<p>Body &amp; $x$ A</p>".into(),
                tags: vec!["algebra".into(), "inequality".into()],
            }]
        );
        std::fs::write(&path, "<Topics></Topics>").unwrap();
        assert!(read_topics(&path).unwrap_err().to_string().contains("no <Topic>"));
        std::fs::write(&path, "<Topics><Topic number=\"A.2\"><Title>&nbsp;</Title></Topic></Topics>").unwrap();
        assert!(read_topics(&path).unwrap_err().to_string().contains("unknown entity &nbsp;"));
    }
}
