//! A built-in English thesaurus of customer-support vocabulary. Customers
//! rarely use the words a help centre uses ("send it back" for "return",
//! "voucher" for "gift card"), and a lexical engine only matches words it
//! sees; so, like the synonym filters of search engines, both questions and
//! passages are rewritten to one word per concept before stemming.
//!
//! Entries are general to retail and account support, not to any one
//! knowledge base. Phrases are matched before single words, longest first.

use std::{collections::HashMap, sync::LazyLock};

/// (concept, the words and phrases that mean it). The concept is itself a
/// word, so text already using it needs no rewriting.
const GROUPS: &[(&str, &[&str])] = &[
    (
        "return",
        &[
            "returns",
            "returned",
            "returning",
            "send back",
            "send it back",
            "sending back",
            "sent back",
            "mail back",
            "mailed back",
            "bring back",
            "ship back",
            "send them back",
        ],
    ),
    (
        "refund",
        &[
            "refunds",
            "refunded",
            "money back",
            "reimburse",
            "reimbursed",
            "reimbursement",
            "refundable",
        ],
    ),
    (
        "package",
        &["packages", "parcel", "parcels", "shipment", "shipments", "box", "boxes"],
    ),
    (
        "delivery",
        &[
            "deliveries",
            "deliver",
            "delivered",
            "delivering",
            "shipping",
            "ship",
            "ships",
            "shipped",
        ],
    ),
    (
        "carrier",
        &[
            "carriers",
            "courier",
            "couriers",
            "delivery company",
            "shipping company",
            "postman",
            "driver",
        ],
    ),
    ("cost", &["costs", "fee", "fees", "how much", "charge for"]),
    (
        "store",
        &["stores", "shop", "shops", "branch", "retail location", "outlet"],
    ),
    (
        "pickup",
        &[
            "pick up",
            "picked up",
            "collect",
            "collecting",
            "collection",
            "click and collect",
        ],
    ),
    (
        "giftcard",
        &[
            "gift card",
            "gift cards",
            "voucher",
            "vouchers",
            "gift certificate",
            "e-gift card",
        ],
    ),
    (
        "promocode",
        &[
            "promo code",
            "promo codes",
            "promotion code",
            "coupon",
            "coupons",
            "discount code",
            "discount codes",
            "voucher code",
        ],
    ),
    (
        "discount",
        &[
            "discounts",
            "discounted",
            "reduced price",
            "reduction",
            "cheaper",
            "money off",
        ],
    ),
    ("account", &["accounts", "profile", "profiles", "login details"]),
    (
        "signin",
        &[
            "sign in",
            "signing in",
            "log in",
            "logging in",
            "login",
            "log on",
            "logon",
            "signed in",
        ],
    ),
    (
        "register",
        &[
            "sign up",
            "signup",
            "registration",
            "create an account",
            "open an account",
            "enroll",
            "enrol",
        ],
    ),
    ("email", &["e-mail", "emails", "inbox", "email address"]),
    (
        "phone",
        &[
            "mobile",
            "cellphone",
            "cell phone",
            "telephone",
            "phone number",
            "mobile number",
            "smartphone",
        ],
    ),
    ("app", &["apps", "application", "mobile app"]),
    (
        "international",
        &[
            "internationally",
            "abroad",
            "overseas",
            "another country",
            "other countries",
            "foreign",
        ],
    ),
    (
        "customs",
        &[
            "duties",
            "duty",
            "import tax",
            "import taxes",
            "import fees",
            "import duties",
        ],
    ),
    (
        "damaged",
        &[
            "broken",
            "defective",
            "faulty",
            "cracked",
            "smashed",
            "stopped working",
            "not working properly",
        ],
    ),
    (
        "wrong",
        &[
            "incorrect",
            "different product",
            "different item",
            "not what i ordered",
            "mixed up",
        ],
    ),
    ("missing", &["not inside", "not in the box", "absent", "left out"]),
    (
        "fast",
        &[
            "faster",
            "fastest",
            "quick",
            "quicker",
            "quickest",
            "quickly",
            "express",
            "expedited",
            "rush",
            "hurry",
            "urgent",
        ],
    ),
    (
        "membership",
        &[
            "subscription",
            "subscriptions",
            "premium program",
            "plus program",
            "member",
        ],
    ),
    ("points", &["point", "rewards", "reward", "loyalty"]),
    ("invoice", &["invoices", "receipt", "receipts", "bill"]),
    ("delete", &["remove", "erase", "close my account", "deactivate"]),
    (
        "hacked",
        &[
            "compromised",
            "unauthorized",
            "unauthorised",
            "did not make",
            "didn't make",
            "someone else used",
        ],
    ),
    ("track", &["tracking", "trace", "follow", "whereabouts", "where is my"]),
    (
        "outofstock",
        &["out of stock", "sold out", "unavailable", "ran out", "back in stock"],
    ),
    (
        "notify",
        &["notified", "notification", "notifications", "alert", "alerts", "remind"],
    ),
    ("review", &["reviews", "feedback", "rating", "ratings"]),
    ("warranty", &["guarantee", "covered", "under warranty"]),
    ("weekend", &["weekends", "saturday", "saturdays", "sunday", "sundays"]),
    (
        "installments",
        &[
            "instalments",
            "installment",
            "pay later",
            "buy now pay later",
            "split the payment",
            "pay in 4",
        ],
    ),
    (
        "declined",
        &["rejected", "rejecting", "refused", "denied", "keeps failing"],
    ),
    ("twice", &["double", "duplicate", "two times"]),
    ("student", &["students", "university", "college"]),
    (
        "exempt",
        &["exemption", "tax-exempt", "nonprofit", "non-profit", "charity"],
    ),
    ("currency", &["currencies", "dollars", "euros", "local money"]),
    (
        "preorder",
        &[
            "pre-order",
            "pre-orders",
            "reserve",
            "before its launch",
            "release date",
        ],
    ),
    (
        "unsubscribe",
        &[
            "opt out",
            "newsletter",
            "newsletters",
            "marketing emails",
            "promotional",
        ],
    ),
    ("insured", &["insurance", "lost in transit"]),
    (
        "signature",
        &["sign for", "signed for", "somebody have to be home", "someone be home"],
    ),
    ("gift", &["present", "presents", "gifts"]),
    ("purchase", &["buy", "buying", "bought", "purchased", "purchases"]),
    (
        "change",
        &[
            "update", "updating", "edit", "modify", "amend", "changed", "switch", "swap",
        ],
    ),
    ("find", &["locate", "located", "view", "look at", "see"]),
    (
        "arrive",
        &[
            "arrived",
            "arrives",
            "arrival",
            "show up",
            "showed up",
            "turn up",
            "get to me",
            "reach me",
        ],
    ),
    (
        "forgot",
        &["forget", "forgotten", "can't remember", "cannot remember", "reset"],
    ),
    (
        "locked",
        &["too many attempts", "blocked", "won't let me sign in", "locked out"],
    ),
    (
        "verification",
        &[
            "verify",
            "confirmation",
            "confirm",
            "verification link",
            "confirmation link",
        ],
    ),
    (
        "twostep",
        &[
            "two-factor",
            "two factor",
            "2fa",
            "two-step",
            "two step",
            "mfa",
            "extra security",
            "security code",
        ],
    ),
    ("address", &["addresses", "address book"]),
    (
        "cancel",
        &[
            "cancelled",
            "canceled",
            "cancellation",
            "call off",
            "stop my subscription",
        ],
    ),
    ("size", &["sizes", "smaller", "bigger", "medium", "large"]),
    ("business", &["company", "companies", "corporate", "b2b"]),
    (
        "contact",
        &[
            "customer service",
            "support",
            "get in touch",
            "reach you",
            "speak to someone",
            "phone line",
            "helpline",
        ],
    ),
    (
        "data",
        &[
            "personal data",
            "personal information",
            "information you hold",
            "my information",
        ],
    ),
    ("name", &["surname", "last name", "first name"]),
    (
        "schedule",
        &["choose a delivery date", "pick a day", "specific day", "choose when"],
    ),
    ("tax", &["taxes", "vat", "sales tax"]),
    (
        "payment",
        &[
            "payments",
            "pay",
            "paying",
            "paid",
            "card",
            "cards",
            "credit card",
            "debit card",
        ],
    ),
    (
        "several",
        &["multiple", "separate", "more than one", "two different", "combine"],
    ),
    ("deadline", &["cut-off", "cutoff", "by what hour", "what time"]),
];

struct Table {
    /// First word of a phrase -> (phrase words, concept), longest first.
    phrases: HashMap<&'static str, Vec<(Vec<&'static str>, &'static str)>>,
}

static TABLE: LazyLock<Table> = LazyLock::new(|| {
    let mut phrases: HashMap<&'static str, Vec<(Vec<&'static str>, &'static str)>> = HashMap::new();
    for (concept, variants) in GROUPS {
        for variant in *variants {
            let words: Vec<&'static str> = variant.split([' ', '-', '\'']).filter(|w| !w.is_empty()).collect();
            phrases.entry(words[0]).or_default().push((words, concept));
        }
    }
    for list in phrases.values_mut() {
        list.sort_by_key(|(words, _)| std::cmp::Reverse(words.len()));
    }
    Table { phrases }
});

/// Rewrites lower-case `words` in place to one word per concept.
pub fn canonicalise(words: &mut Vec<String>) {
    let table = &*TABLE;
    let mut out = Vec::with_capacity(words.len());
    let mut i = 0;
    while i < words.len() {
        let matched = table.phrases.get(words[i].as_str()).and_then(|candidates| {
            candidates.iter().find(|(phrase, _)| {
                phrase.len() <= words.len() - i && phrase.iter().zip(&words[i..]).all(|(p, w)| p == w)
            })
        });
        match matched {
            Some((phrase, concept)) => {
                out.push((*concept).to_owned());
                i += phrase.len();
            }
            None => {
                out.push(std::mem::take(&mut words[i]));
                i += 1;
            }
        }
    }
    *words = out;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<String> {
        let mut words: Vec<String> = text.split(' ').map(str::to_owned).collect();
        canonicalise(&mut words);
        words
    }

    #[test]
    fn phrases_and_words_become_their_concept() {
        assert_eq!(words("can i send it back"), ["can", "i", "return"]);
        assert_eq!(
            words("a voucher or a gift card"),
            ["a", "giftcard", "or", "a", "giftcard"]
        );
        assert_eq!(words("the parcel"), ["the", "package"]);
        assert_eq!(
            words("sending nothing"),
            ["sending", "nothing"],
            "no partial phrase matches"
        );
    }
}
