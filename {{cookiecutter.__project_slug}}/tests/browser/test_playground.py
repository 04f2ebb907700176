"""The playground as a person uses it: conversations streamed, kept, switched, deleted; errors
in words; the API key asked for when the service needs one."""

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from selenium.webdriver import Chrome, Keys
from sqlalchemy import create_engine, update

from {{ cookiecutter.__package_name }}.session_store.tables import sessions

from ..support.server import SLOW_APP, Server, server_process
from .conftest import WORD_DELAY, Playground, behind_a_path_prefix

pytestmark = pytest.mark.browser

NewKey = Callable[[], str]


def test_a_conversation_streams_and_is_there_after_a_reload(
    page: Playground, new_key: NewKey
) -> None:
    page.sign_in(new_key())
    prompt = "tell me about the weather in the mountains this week please"

    page.send(prompt)
    # Part of the answer is on the page while the rest is still coming.
    partial = page.wait_for(
        lambda: page.streaming() and page.texts("assistant") and page.texts("assistant")[-1]
    )
    page.wait_for(lambda: not page.streaming())
    first = page.texts("assistant")[-1]
    page.type("and in the valley?", Keys.SHIFT, Keys.ENTER, Keys.NULL, "thanks")
    page.type(Keys.ENTER)
    page.wait_for(lambda: len(page.texts("assistant")) == 2 and not page.streaming())
    second = page.texts("assistant")[-1]

    assert first == f"You said: {prompt}"
    assert first.startswith(partial) and partial != first
    assert second == "You said: and in the valley?\nthanks"
    assert page.texts("user") == [prompt, "and in the valley?\nthanks"]

    page.driver.refresh()  # the key is remembered by the tab
    page.wait_for(lambda: len(page.sessions()) == 1)
    assert not page.asks_for_credential()
    page.sessions()[0].click()
    page.wait_for(lambda: len(page.texts("assistant")) == 2)
    assert page.texts("user") == [prompt, "and in the valley?\nthanks"]
    assert page.texts("assistant") == [first, second]
    assert page.script_problems() == []


def test_conversations_can_be_switched_and_deleted(
    page: Playground, new_key: NewKey, server: Server
) -> None:
    key = new_key()
    page.sign_in(key)
    page.start_conversations("first conversation", "second conversation")

    newest, oldest = page.sessions()
    oldest.click()
    page.wait_for(lambda: page.texts("user") == ["first conversation"])
    assert oldest.get_attribute("aria-current") == "true"
    assert newest.get_attribute("aria-current") is None
    page.find("#delete-conversation").click()
    page.driver.switch_to.alert.accept()  # "Delete this conversation ...?"
    page.wait_for(lambda: len(page.sessions()) == 1)

    assert page.find("#conversation-title").text == "New conversation"
    assert page.texts("user") == []
    listed = server.client.get("/sessions", headers={"Authorization": f"Bearer {key}"})
    assert [session["session_id"] for session in listed.json()["sessions"]] == [
        page.sessions()[0].get_attribute("data-session-id")
    ]
    page.sessions()[0].click()
    page.wait_for(lambda: page.texts("user") == ["second conversation"])


def test_a_conversation_opened_again_before_its_history_came_shows_it_once(
    page: Playground, new_key: NewKey
) -> None:
    page.sign_in(new_key())
    page.start_conversations("first conversation", "second conversation")
    newest, oldest = page.sessions()

    # Opened, then the other, then it again (or a double click), on a slow network.
    page.hold_history()
    oldest.click()
    newest.click()
    oldest.click()
    page.release_history()
    page.wait_for(lambda: page.texts("user") and page.find("#send").is_enabled())
    assert page.texts("user") == ["first conversation"]
    assert page.texts("assistant") == ["You said: first conversation"]

    # A message sent while the history is coming waits for it, so that it comes after it.
    page.hold_history()
    newest.click()
    page.send("and then?")
    assert not page.find("#send").is_enabled()
    page.release_history()
    page.wait_for(lambda: page.texts("user") and page.find("#send").is_enabled())
    assert page.texts("user") == ["second conversation"]
    assert page.find("#prompt").get_attribute("value") == "and then?"
    assert page.send_and_wait("") == "You said: and then?"
    assert page.texts("user") == ["second conversation", "and then?"]
    assert page.script_problems() == []


def test_while_a_turn_runs_the_page_stays_on_its_conversation(
    page: Playground, new_key: NewKey
) -> None:
    """Leaving it (or forgetting the key) would stop reading the answer, and the service refuses
    to delete it."""
    page.sign_in(new_key())
    page.start_conversations("first conversation", "hello")
    long_prompt = " ".join(["word"] * 40)  # 2 s of streaming
    page.send(long_prompt)
    page.wait_for(lambda: page.streaming() and len(page.texts("assistant")) == 2)

    current, other = page.sessions()
    assert current.get_attribute("aria-current") == "true"
    for button in (current, other, page.find("#new-conversation"), page.find("#forget-credential")):
        assert not button.is_enabled()
        button.click()
    assert not page.find("#delete-conversation").is_enabled()
    assert page.streaming()
    page.wait_for(lambda: not page.streaming())

    assert page.texts("user") == ["hello", long_prompt]
    assert page.texts("assistant")[-1] == f"You said: {long_prompt}"
    assert page.error() == ""
    assert all(button.is_enabled() for button in page.sessions())
    assert page.find("#delete-conversation").is_enabled()


def test_an_answer_coming_in_leaves_a_reader_where_they_scrolled(
    page: Playground, new_key: NewKey
) -> None:
    page.sign_in(new_key())
    lines = " ".join(["line\n"] * 60)  # a message, and an answer, taller than the view
    page.driver.execute_script("document.getElementById('prompt').value = arguments[0]", lines)
    page.type(Keys.ENTER)
    messages = page.find("#messages")

    def scroll(script: str) -> object:
        return page.driver.execute_script(f"const m = arguments[0]; return {script}", messages)

    # The view follows the answer as it comes in...
    page.wait_for(lambda: page.streaming() and page.texts("assistant"))
    assert scroll("m.scrollHeight - m.scrollTop - m.clientHeight < 20")
    # ... but not once the user scrolled up to read.
    scroll("m.scrollTop = 0")
    shown = page.texts("assistant")[-1]
    page.wait_for(lambda: page.texts("assistant")[-1] != shown)
    assert scroll("m.scrollTop") == 0
    assert page.streaming()


def test_the_keyboard_focus_goes_to_the_prompt_when_stop_goes_away(
    page: Playground, new_key: NewKey
) -> None:
    page.sign_in(new_key())
    focus_stop = "document.getElementById('stop').focus()"

    # Stopped from the keyboard: the prompt comes back, and the focus with it.
    page.send(" ".join(["word"] * 60))
    page.wait_for(lambda: page.find("#stop").is_enabled())
    page.driver.execute_script(focus_stop)
    page.driver.switch_to.active_element.send_keys(Keys.ENTER)
    page.wait_for(page.error)
    assert page.driver.switch_to.active_element.get_attribute("id") == "prompt"

    # Stop had the focus when the answer ended.
    page.find("#prompt").clear()
    page.send(" ".join(["word"] * 20))  # 1 s of streaming
    page.wait_for(lambda: page.find("#stop").is_enabled())
    page.driver.execute_script(focus_stop)
    page.wait_for(lambda: not page.streaming())
    assert page.driver.switch_to.active_element.get_attribute("id") == "prompt"


def test_the_page_works_behind_a_proxy_under_a_path_prefix(
    page: Playground, new_key: NewKey, server: Server
) -> None:
    with behind_a_path_prefix(str(server.client.base_url)) as url:
        page.driver.get(url)
        page.wait_for(lambda: page.driver.current_url == f"{url}playground/")
        page.sign_in(new_key())
        assert (
            page.send_and_wait("hello from behind a proxy") == "You said: hello from behind a proxy"
        )
        page.wait_for(page.sessions)[0].click()
        page.wait_for(lambda: page.texts("user") == ["hello from behind a proxy"])
        assert page.error() == ""


def test_conversations_are_listed_with_the_time_they_were_started(
    page: Playground, new_key: NewKey, database_file: str
) -> None:
    """The list is in that order, newest first."""
    page.sign_in(new_key())
    page.send_and_wait("hello")
    session_id = page.wait_for(page.sessions)[0].get_attribute("data-session-id")
    engine = create_engine(database_file)
    with engine.begin() as connection:  # as if its last turn had been in another year
        connection.execute(
            update(sessions)
            .where(sessions.c.session_id == session_id)
            .values(updated_at=datetime(2001, 6, 1, tzinfo=UTC))
        )
    engine.dispose()
    page.driver.refresh()

    label = page.wait_for(page.sessions)[0].text
    assert str(datetime.now().year) in label
    assert "2001" not in label


def test_a_second_tab_is_told_that_the_conversation_is_busy(
    page: Playground, new_key: NewKey
) -> None:
    key = new_key()
    page.sign_in(key)
    page.send_and_wait("hello")
    long_prompt = " ".join(["word"] * 60)  # 3 s of streaming
    page.send(long_prompt)
    page.wait_for(lambda: page.streaming() and page.texts("assistant")[-1] != "You said: hello")

    first_tab = page.driver.current_window_handle
    page.driver.switch_to.new_window("tab")
    page.driver.get(page.url)
    page.sign_in(key)  # a new tab remembers nothing
    page.wait_for(page.sessions)[0].click()
    page.wait_for(lambda: page.texts("user") == ["hello"])
    page.send("are you there?")
    message = page.wait_for(page.error)

    assert "still answering another message" in message
    assert "409 session_busy" in message
    assert page.find("#prompt").get_attribute("value") == "are you there?"  # to send again
    assert page.texts("user") == ["hello"]
    page.driver.switch_to.window(first_tab)
    page.wait_for(lambda: not page.streaming())
    assert page.texts("assistant")[-1] == f"You said: {long_prompt}"


def test_stop_ends_the_turn_stores_nothing_and_gives_the_prompt_back(
    page: Playground, new_key: NewKey, server: Server
) -> None:
    key = new_key()
    page.sign_in(key)
    long_prompt = " ".join(["word"] * 60)  # 3 s of streaming

    # The first turn of a new conversation: stopped, nothing of the conversation is kept.
    page.send(long_prompt)
    page.wait_for(lambda: page.find("#stop").is_enabled() and page.texts("assistant"))
    assert not page.find("#send").is_displayed()
    page.find("#stop").click()

    assert page.wait_for(page.error).startswith("Stopped: nothing of this message was stored.")
    assert page.texts("user") == page.texts("assistant") == []
    assert page.find("#prompt").get_attribute("value") == long_prompt  # to edit or send again
    assert page.find("#conversation-title").text == "New conversation"
    assert page.find("#send").is_displayed() and not page.find("#stop").is_displayed()
    page.find("#prompt").clear()

    # A turn of a conversation that has one already: stopped, the next is answered at once.
    assert page.send_and_wait("hello") == "You said: hello"
    page.send(long_prompt)
    page.wait_for(lambda: page.find("#stop").is_enabled() and len(page.texts("assistant")) == 2)
    page.find("#stop").click()
    page.wait_for(page.error)
    page.find("#prompt").clear()
    assert page.send_and_wait("still there?") == "You said: still there?"

    session_id = page.wait_for(page.sessions)[0].get_attribute("data-session-id")
    history = server.client.get(
        f"/sessions/{session_id}/history", headers={"Authorization": f"Bearer {key}"}
    )
    stored = [message["content"][0]["text"] for message in history.json()["messages"]]
    assert stored == ["hello", "You said: hello", "still there?", "You said: still there?"]
    assert len(page.sessions()) == 1
    assert page.script_problems() == []


def test_errors_of_the_service_are_said_in_words(page: Playground, new_key: NewKey) -> None:
    page.sign_in(new_key())
    page.driver.execute_script("document.getElementById('prompt').value = 'x'.repeat(501)")
    page.type(Keys.ENTER)

    message = page.wait_for(page.error)
    assert message.startswith("The message is too long.")
    assert "413 prompt_too_long" in message
    assert page.texts("user") == []


def test_the_api_key_is_asked_for_checked_and_forgotten(page: Playground, new_key: NewKey) -> None:
    page.wait_for(page.asks_for_credential)
    assert page.driver.switch_to.active_element.get_attribute("id") == "credential"
    assert page.find("#forget-credential").is_displayed() is False

    page.find("#credential").send_keys("not-a-key", Keys.ENTER)
    page.wait_for(page.asks_for_credential)
    assert "did not accept this credential" in page.find("#credential-error").text
    page.sign_in(new_key())
    page.wait_for(lambda: not page.error())
    assert page.send_and_wait("hi") == "You said: hi"
    assert page.find("#forget-credential").is_displayed()

    page.find("#forget-credential").click()
    page.wait_for(page.asks_for_credential)
    assert page.driver.execute_script("return sessionStorage.length") == 0
    assert page.sessions() == []
    assert page.script_problems() == []


def test_older_conversations_come_a_page_at_a_time(
    page: Playground, new_key: NewKey, server: Server
) -> None:
    key = new_key()
    for _ in range(21):
        created = server.client.post("/sessions", headers={"Authorization": f"Bearer {key}"})
        assert created.status_code == 201
    page.sign_in(key)
    page.wait_for(lambda: len(page.sessions()) == 20)

    page.find("#more-sessions").click()
    page.wait_for(lambda: len(page.sessions()) == 21)
    assert not page.find("#more-sessions").is_displayed()
    ids = [session.get_attribute("data-session-id") for session in page.sessions()]
    assert len(set(ids)) == 21


def test_the_dialog_closed_without_a_key_says_what_to_do(page: Playground) -> None:
    page.wait_for(page.asks_for_credential)
    page.find("#credential").send_keys(Keys.ESCAPE)

    assert "without a credential" in page.wait_for(page.error)
    page.send("hello?")
    page.wait_for(page.asks_for_credential)
    assert page.find("#prompt").get_attribute("value") == "hello?"


def test_on_a_phone_the_page_is_one_column(page: Playground, new_key: NewKey) -> None:
    page.driver.set_window_size(390, 844)
    page.sign_in(new_key())
    page.send_and_wait("a reply that must wrap within the width of a small phone screen")

    sessions, chat = page.find("nav.sessions"), page.find("main.chat")
    assert sessions.rect["x"] == chat.rect["x"]  # one column: the list above the chat
    assert sessions.rect["width"] == chat.rect["width"]
    assert sessions.rect["y"] < chat.rect["y"]
    overflow = "return document.documentElement.scrollWidth > window.innerWidth"
    assert page.driver.execute_script(overflow) is False


def test_a_screenshot_of_a_conversation(
    browser: Chrome, database_file: str, new_key: NewKey, screenshot_path: Path
) -> None:
    """With the model that calls a tool when asked to (support/slow_app.py), so that the
    screenshot shows a tool call too."""
    browser.set_window_size(1280, 860)
    with server_process(
        database_file, app=SLOW_APP, PLAYGROUND="true", ECHO_WORD_DELAY=WORD_DELAY
    ) as server:
        page = Playground(browser, str(server.client.base_url.join("/playground/")))
        page.open()
        page.sign_in(new_key())
        page.send_and_wait("What can you do?")
        page.find("#new-conversation").click()
        page.send_and_wait("Hello! Which sessions do I have?")
        page.send_and_wait("Look it up with your tool, please.")
        page.wait_for(lambda: len(page.sessions()) == 2)
        page.find("#prompt").click()  # the focus ring, as someone typing sees it

        screenshot_path.parent.mkdir(parents=True, exist_ok=True)
        assert page.driver.save_screenshot(str(screenshot_path))
    assert screenshot_path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_tool_calls_show_while_they_run(
    browser: Chrome, database_file: str, new_key: NewKey
) -> None:
    """With a model that calls a slow tool (support/slow_app.py): the call shows while the tool
    runs, its result when it ends, and both again in the history."""
    with server_process(
        database_file,
        app=SLOW_APP,
        PLAYGROUND="true",
        ECHO_WORD_DELAY=WORD_DELAY,
        TEST_TOOL_DELAY="1",
    ) as server:
        page = Playground(browser, str(server.client.base_url.join("/playground/")))
        page.open()
        page.sign_in(new_key())
        page.send("use the tool please")

        running = page.wait_for(lambda: page.find_all(".tool"))[0]
        assert "slow_tool" in running.text and "running…" in running.text
        page.wait_for(lambda: not page.streaming())
        assert page.find(".tool").text.endswith("done")

        page.driver.refresh()
        page.wait_for(page.sessions)[0].click()
        page.wait_for(lambda: page.find_all(".tool"))
        assert page.find(".tool").text == 'Tool slow_tool({"topic":"turns"}) done'


def test_without_authentication_no_key_is_asked_for(browser: Chrome, database_file: str) -> None:
    """AUTH_MODE=none: the page talks to the API at once; when the service goes away, mid-turn
    or before one, it says so."""
    with server_process(
        database_file, PLAYGROUND="true", AUTH_MODE="none", ECHO_WORD_DELAY=WORD_DELAY
    ) as server:
        page = Playground(browser, str(server.client.base_url.join("/playground/")))
        page.open()
        assert page.send_and_wait("anyone there?") == "You said: anyone there?"
        assert not page.asks_for_credential()
        assert not page.find("#forget-credential").is_displayed()

        page.send(" ".join(["word"] * 60))
        page.wait_for(lambda: page.streaming() and len(page.texts("assistant")) == 2)
        server.process.kill()
        assert "The connection dropped" in page.wait_for(page.error)
        page.send("and now?")
        page.wait_for(lambda: "cannot be reached" in page.error())
