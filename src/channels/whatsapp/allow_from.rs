//! `allowFrom`, with ChatBotKit's semantics: E.164 numbers (with or without `+`) separated by
//! commas or newlines; `*` allows everyone; an empty list allows nobody.

/// A parsed `allowFrom` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowFrom {
    Everyone,
    /// Digits only, no `+`. Empty means nobody.
    Numbers(Vec<String>),
}

/// E.164 allows at most 15 digits; real numbers have at least 7 (country code + subscriber).
fn normalize(entry: &str) -> Option<String> {
    let digits: String = entry.strip_prefix('+').unwrap_or(entry).to_owned();
    let ok = (7..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0');
    ok.then_some(digits)
}

impl AllowFrom {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let mut numbers = Vec::new();
        let mut everyone = false;
        for entry in raw
            .split([',', '\n', '\r'])
            .map(str::trim)
            .filter(|e| !e.is_empty())
        {
            if entry == "*" {
                everyone = true;
                continue;
            }
            // People paste numbers with spaces and dashes; WhatsApp ids have neither.
            let compact: String = entry
                .chars()
                .filter(|c| !matches!(c, ' ' | '-' | '(' | ')' | '.'))
                .collect();
            match normalize(&compact) {
                Some(n) => numbers.push(n),
                None => {
                    let shown: String = entry.chars().take(32).collect();
                    return Err(format!("{shown:?} is not an E.164 phone number or *"));
                }
            }
        }
        if everyone {
            return Ok(Self::Everyone);
        }
        numbers.sort();
        numbers.dedup();
        Ok(Self::Numbers(numbers))
    }

    /// Whether a WhatsApp user id (digits, as Meta sends `wa_id` and `from`) may talk to the bot.
    pub fn allows(&self, wa_id: &str) -> bool {
        match self {
            Self::Everyone => true,
            Self::Numbers(list) => {
                let id = wa_id.strip_prefix('+').unwrap_or(wa_id);
                list.iter().any(|n| n == id)
            }
        }
    }
}

/// A WhatsApp recipient: digits of an E.164 number, `+` optional.
pub fn parse_recipient(raw: &str) -> Option<String> {
    let compact: String = raw
        .trim()
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '(' | ')' | '.'))
        .collect();
    normalize(&compact)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn semantics_match_chatbotkit() {
        assert!(AllowFrom::parse("*").unwrap().allows("447700900123"));
        let none = AllowFrom::parse("").unwrap();
        assert!(!none.allows("447700900123"));
        let some = AllowFrom::parse("+44 7700 900123,\n15551234567\r\n").unwrap();
        assert!(some.allows("447700900123"));
        assert!(some.allows("+15551234567"));
        assert!(!some.allows("15551234568"));
        assert_eq!(
            AllowFrom::parse("15551234567, *").unwrap(),
            AllowFrom::Everyone
        );
    }

    #[test]
    fn garbage_is_refused_with_the_entry_named() {
        for bad in [
            "abc",
            "+1",
            "1234567890123456",
            "0044770090012",
            "12345;DROP",
        ] {
            let e = AllowFrom::parse(bad).unwrap_err();
            assert!(e.contains("E.164"), "{bad}: {e}");
        }
        assert_eq!(
            parse_recipient("+1 (555) 123-4567").as_deref(),
            Some("15551234567")
        );
        assert_eq!(parse_recipient("12"), None);
    }
}
