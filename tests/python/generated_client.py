"""Drives the stack through a client openapi-python-client generated from
the gateway's OpenAPI document: creates a bot, a conversation answered by
it and a message, as an integrator would. Exits non-zero, saying why, on
any answer that is not the documented success.

    python generated_client.py <base url> <api key>   (the generated
    package `platform_client` on PYTHONPATH)
"""

import sys

from platform_client import AuthenticatedClient
from platform_client.api.bot_service import create_bot
from platform_client.api.conversation_service import create_conversation, get_conversation
from platform_client.api.message_service import send_message
from platform_client.models import (
    CreateBotBody,
    CreateConversationBody,
    Problem,
    SendMessageBody,
)


def succeeded(what, reply):
    if reply is None or isinstance(reply, Problem):
        detail = reply.to_dict() if isinstance(reply, Problem) else "no parsed reply"
        sys.exit(f"{what} failed: {detail}")
    return reply


def main(base_url, key):
    client = AuthenticatedClient(base_url=base_url, token=key, raise_on_unexpected_status=True)
    with client as client:
        bot = succeeded("CreateBot", create_bot.sync(client=client, body=CreateBotBody(name="Generated client bot")))
        assert bot.id.startswith("bot_"), bot.id
        conversation = succeeded(
            "CreateConversation",
            create_conversation.sync(
                client=client,
                body=CreateConversationBody(user_id="generated-client-user", channel="web", bot_id=bot.id),
            ),
        )
        assert conversation.bot_id == bot.id, conversation.to_dict()
        sent = succeeded(
            "SendMessage",
            send_message.sync(
                conversation.id,
                client=client,
                body=SendMessageBody(role="user", content="Hello from a generated client"),
                idempotency_key="generated-client-1",
            ),
        )
        assert sent.message.content == "Hello from a generated client", sent.to_dict()
        again = succeeded("GetConversation", get_conversation.sync(conversation.id, client=client))
        assert int(again.message_count) >= 1, again.to_dict()
        print(f"bot {bot.id}, conversation {conversation.id}, message {sent.message.id}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
