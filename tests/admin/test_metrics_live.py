"""``/metrics`` over a real socket, scraped while clients chat through a real server."""

from __future__ import annotations

import urllib.request
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.defer import inlineCallbacks
from twisted.internet.threads import deferToThread

from pingchat.admin import status
from pingchat.admin.metrics import URL_FILE
from tests.live import LiveServer


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(url, timeout=10) as answer:  # noqa: S310 - http://127.0.0.1
        text = answer.read().decode("utf-8")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


class LiveMetricsTests(LiveServer):
    metrics = ("tcp:0:interface=127.0.0.1",)

    def url(self) -> str:
        [opened] = [o for o in self.server.listeners.opened if o.listener.option == "metrics"]
        return f"http://127.0.0.1:{opened.port.getHost().port}/metrics"

    @inlineCallbacks
    def test_scrapes_while_clients_chat_add_up(self) -> Any:
        url = self.url()
        self.assertEqual((self.dir / URL_FILE).read_text().strip(), url)
        sent = 40

        def chat() -> None:
            alice = self.account(self.connect(), "alice", "#live")
            bob = self.account(self.connect(), "bob", "#live")
            carol = self.account(self.connect(), "carol", "#live")
            for i in range(sent):
                assert alice.request("say", room="#live", text=f"m{i}")["ok"]
            for reader in (bob, carol):
                reader.event("message", text=f"m{sent - 1}")
            assert bob.request("history", room="#live", limit=10)["ok"]
            for c in (alice, bob, carol):
                c.close()

        scrapes: list[dict[Any, float]] = []
        talking = deferToThread(chat)

        def scrape_until_done() -> None:
            while not talking.called:
                scrapes.append(scrape(url))

        yield deferToThread(scrape_until_done)
        yield talking
        yield self.until(lambda: not self.server.native.connections)
        final = yield deferToThread(scrape, url)
        scrapes.append(final)
        self.assertGreater(len(scrapes), 1)
        delivered = [s[("pingchat_messages_delivered_total", ())] for s in scrapes]
        self.assertEqual(delivered, sorted(delivered))  # a counter never goes back

        def at(name: str, **labels: str) -> float:
            return final[(name, tuple(sorted(labels.items())))]

        self.assertEqual(at("pingchat_messages_stored_total", kind="room"), sent)
        self.assertEqual(at("pingchat_messages_delivered_total"), 2 * sent)
        self.assertEqual(at("pingchat_logins_total", door="native"), 3)
        self.assertEqual(at("pingchat_connections", door="native"), 0)
        self.assertEqual(at("pingchat_sessions", door="native"), 0)
        self.assertGreaterEqual(at("pingchat_db_batch_transactions_sum"), sent)
        self.assertGreaterEqual(at("pingchat_db_commit_seconds_count"), 1)
        batches = at("pingchat_db_commit_seconds_count")
        self.assertLess(batches, at("pingchat_db_transactions_total"))  # batched
        self.assertEqual(at("pingchat_db_read_seconds_count", query="room_history"), 1)
        self.assertGreater(at("process_resident_memory_bytes"), 0)

    @inlineCallbacks
    def test_the_lag_probe_reports_every_second(self) -> Any:
        url = self.url()
        yield self.until(
            lambda: bool(self.server.extras["metrics"].recent_lag), tries=300
        )
        found = yield deferToThread(scrape, url)
        self.assertGreaterEqual(found[("pingchat_reactor_lag_seconds_count", ())], 1)

    @inlineCallbacks
    def test_pingchat_status_reads_a_live_server(self) -> Any:
        def look() -> str:
            self.account(self.connect(), "dave").close()
            url, source = status.choose_url(None, self.dir, {}, None)
            return status.render(status.scrape(url, source), url)

        text = yield deferToThread(look)
        self.assertIn(self.url(), text)
        [native] = [line for line in text.splitlines() if line.startswith("native ")]
        self.assertEqual(native.split()[3], "1")  # one login
