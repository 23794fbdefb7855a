//! Tools the `llm` engine offers a model, in the OpenAI function-calling
//! format. Each acts for the conversation's verified customer (the one the
//! workspace's backend named) or on the workspace's public catalog, never
//! on what the model passes as a customer: a model talked into asking for
//! someone else's order gets "not found".

use serde_json::{Value, json};

use super::orders::{Customer, OrderDesk, order_json, product_json};

pub const NAMES: &[&str] = &["customer_orders", "order_status", "product_info"];
/// Orders an order number is looked for among.
const ORDERS_SEARCHED: i32 = 20;

/// The definitions of the enabled tools that can act here: the order
/// tools only when the conversation names a customer.
pub fn definitions(enabled: &[String], customer_known: bool) -> Vec<Value> {
    enabled
        .iter()
        .filter(|name| customer_known || name.as_str() == "product_info")
        .filter_map(|name| definition(name))
        .collect()
}

fn definition(name: &str) -> Option<Value> {
    let (description, parameters) = match name {
        "customer_orders" => (
            "The signed-in customer's latest orders: number, date, total, and shipping status with tracking.",
            json!({"type": "object", "properties": {}, "additionalProperties": false}),
        ),
        "order_status" => (
            "One of the signed-in customer's orders by its number (such as #1001): status, total and tracking.",
            json!({"type": "object", "properties": {"order_number": {"type": "string",
                "description": "The order's number as the customer gives it, such as #1001"}},
                "required": ["order_number"], "additionalProperties": false}),
        ),
        "product_info" => (
            "Products of the store whose title matches the query: description, price range and stock.",
            json!({"type": "object", "properties": {"query": {"type": "string",
                "description": "Words from the product's name"}},
                "required": ["query"], "additionalProperties": false}),
        ),
        _ => return None,
    };
    Some(json!({"type": "function", "function": {"name": name, "description": description, "parameters": parameters}}))
}

/// Runs one call the model made; the tool's answer as JSON text (an
/// `error` object when it cannot answer, which the model reads too).
pub async fn run(desk: &OrderDesk, workspace_id: &str, customer: Option<&Customer>, call: &Value) -> String {
    let function = &call["function"];
    let name = function["name"].as_str().unwrap_or_default();
    let arguments: Value = function["arguments"]
        .as_str()
        .and_then(|text| serde_json::from_str(text).ok())
        .unwrap_or(Value::Null);
    let answer = match (name, customer) {
        ("customer_orders", Some(customer)) => desk
            .latest(workspace_id, customer, 5)
            .await
            .map(|orders| json!({"orders": orders.iter().map(order_json).collect::<Vec<_>>()})),
        ("order_status", Some(customer)) => {
            let wanted = order_number(arguments["order_number"].as_str().unwrap_or_default());
            desk.latest(workspace_id, customer, ORDERS_SEARCHED)
                .await
                .map(|orders| match orders.iter().find(|o| order_number(&o.name) == wanted) {
                    Some(order) => order_json(order),
                    None => json!({"error": "this customer has no order with that number"}),
                })
        }
        ("product_info", _) => {
            let query = arguments["query"].as_str().unwrap_or_default();
            desk.find_products(workspace_id, query)
                .await
                .map(|products| json!({"products": products.iter().map(product_json).collect::<Vec<_>>()}))
        }
        ("customer_orders" | "order_status", None) => Ok(json!({"error": "the customer is not signed in"})),
        _ => Ok(json!({"error": format!("there is no tool named {name:?}")})),
    };
    answer
        .unwrap_or_else(|reason| json!({"error": format!("the store could not be asked: {reason}")}))
        .to_string()
}

/// An order number as compared: "#1001", "1001" and "# 1001" are one.
fn order_number(text: &str) -> String {
    text.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect::<String>()
        .to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_tools_are_offered_only_for_a_named_customer() {
        let enabled: Vec<String> = NAMES.iter().map(|n| n.to_string()).collect();
        let names = |tools: Vec<Value>| -> Vec<String> {
            tools
                .iter()
                .map(|t| t["function"]["name"].as_str().unwrap().to_owned())
                .collect()
        };
        assert_eq!(names(definitions(&enabled, true)), NAMES);
        assert_eq!(names(definitions(&enabled, false)), ["product_info"]);
        assert!(definitions(&[], true).is_empty());
    }

    #[test]
    fn order_numbers_compare_however_they_are_written() {
        assert_eq!(order_number("#1001"), order_number(" 1001"));
        assert_ne!(order_number("#1001"), order_number("#10011"));
    }
}
