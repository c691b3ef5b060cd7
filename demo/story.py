"""The guided fault demo's story: a server and three agents (alice, bob, carol) in one room on
loopback, then seven numbered steps, each announced in the terminal and in every running agent's
timeline (`POST /api/events`) and each checked: the story polls the agents' and the server's APIs
until the step's expected state holds, or reports what it last saw when the step's deadline
passes."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from demo.cast import USERS, agent_for, password_of, server_for
from launcher import AgentProcess, ChildError, HistoryReader, HttpError, ServerProcess, keys

POLL_INTERVAL = 0.2
# A check returns None once the expected state holds, else what it saw instead.
Check = Callable[[], str | None]


class Unmet(Exception):
    """A step's expected state was not reached before its deadline."""


@dataclass
class Outcome:
    number: int
    title: str
    seconds: float
    failure: str | None = None


class Story:
    """The room and the seven steps told about it."""

    def __init__(self, data: Path, temporary: bool, port: int, room: str,
                 timeout: float) -> None:
        self.data, self.temporary, self.room, self.timeout = data, temporary, room, timeout
        # A fresh SQLite database in `data`, whatever DATABASE_URL says.
        self.server = server_for(data, port, database_url=None)
        self.agents = {user: agent_for(self.server, data, user, room) for user in USERS}
        self.alice, self.bob, self.carol = (self.agents[u] for u in USERS)
        self.phone = agent_for(self.server, data, "alice", room, device="alice-2")
        self.reader = HistoryReader(self.server, room, "bob", password_of("bob"))
        self.said: list[str] = []  # the ids of every message posted, in order
        self.deadline = 0.0
        self.steps: list[tuple[str, str, Callable[[], None]]] = [
            ("everyone joins", "All three sign in to the server and open a data channel "
             "to each other.", self.everyone_joins),
            ("everyone chats", "Each posts a message: it reaches every peer over the data "
             "channels, and the server stores it.", self.everyone_chats),
            ("the server is killed (kill -9)", "Every agent sees it down; the data channels "
             "between the peers stay up.", self.server_killed),
            ("bob writes while the server is down", "His message goes peer to peer and waits "
             "in the outboxes for the server.", self.written_meanwhile),
            ("the server comes back on the same port", "Every agent joins again, the outboxes "
             "upload, and the server's log equals every agent's.", self.server_back),
            ("carol is killed (kill -9) and comes back", "The others see her go and alice writes "
             "meanwhile; carol restarts with her data dir and catches up.",
             self.peer_killed),
            ("alice signs in on a second device", "A new device (new data dir, same account) "
             "gets the whole history, and everyone links to it.", self.second_device),
        ]

    # -- start-up -------------------------------------------------------------------------

    def start(self) -> None:
        self.deadline = time.monotonic() + self.timeout
        self.server.start(self.left())
        print(f"server      {self.server.url}/  (pid {self.server.pid}; history: "
              f"{self.server.url}/rooms/{self.room}/history)", flush=True)
        for agent in self.agents.values():  # all three at once: each takes a while to import
            agent.launch()
        for agent in self.agents.values():
            agent.ready(self.left())
            print(f"{agent.name:<11} {agent.url}/  (pid {agent.pid})", flush=True)
        print("Accounts: alice, bob, carol with password <name>-demo-password.")
        removed = " (a temporary dir: removed at the end unless --keep or a step fails)"
        print(f"Data and logs (server.log, <name>.log) in {self.data}"
              f"{removed if self.temporary else ''}.")
        print("Open the UIs to watch: every step is also noted in each agent's timeline.",
              flush=True)

    def left(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    # -- narration and checks ---------------------------------------------------------------

    def processes(self) -> list[AgentProcess | ServerProcess]:
        """Every process of the story, the server first."""
        return [self.server, *self.agents.values(), self.phone]

    def running(self) -> list[AgentProcess]:
        return [a for a in (*self.agents.values(), self.phone) if a.running]

    def narrate(self, text: str) -> None:
        """Print `text` and add it to every running agent's timeline; a failed note is a
        warning (an agent without POST /api/events answers 404), never fatal."""
        print(text, flush=True)
        failed: dict[str, list[str]] = {}
        for agent in self.running():
            try:
                agent.note(text)
            except HttpError as exc:
                reason = f"HTTP {exc.status}" if exc.status else str(exc)
                failed.setdefault(reason, []).append(agent.name)
        for reason, names in failed.items():
            print(f"  warning: not noted in the timeline of {', '.join(names)}: {reason}",
                  flush=True)

    def expect(self, what: str, check: Check) -> None:
        """Poll `check` until it passes or the step's deadline passes (then raise Unmet)."""
        started = time.monotonic()
        while True:
            try:
                seen = check()
            except HttpError as exc:
                seen = str(exc)
            if seen is None:
                print(f"  ok    {what}  ({time.monotonic() - started:.1f} s)", flush=True)
                return
            if time.monotonic() >= self.deadline:
                raise Unmet(f"expected {what}; still not so after the step's {self.timeout:g} s "
                            f"deadline: {seen}")
            time.sleep(POLL_INTERVAL)

    def links(self, agents: list[AgentProcess], server: bool = True) -> str | None:
        """Each agent has a connected data channel to every other (and joined the server)."""
        for agent in agents:
            state = agent.state()
            if server and not state["server"]["connected"]:
                return f"{agent.name}'s server link is {state['server']['state']}"
            peers = {p["device"]: p["state"] for p in state["peers"]}
            for other in agents:
                if other is not agent and peers.get(other.device) != "connected":
                    return (f"{agent.name}'s link to {other.name} is "
                            f"{peers.get(other.device, 'not listed')}")
        return None

    def holds(self, agents: list[AgentProcess], ids: list[str]) -> str | None:
        for agent in agents:
            have = {m["id"] for m in agent.messages()}
            lacking = [i for i in ids if i not in have]
            if lacking:
                return f"{agent.name} lacks {len(lacking)} of {len(ids)} messages"
        return None

    def outboxes_empty(self, agents: list[AgentProcess]) -> str | None:
        for agent in agents:
            outbox = agent.state()["server"]["outbox"]
            if outbox:
                return f"{agent.name}'s outbox holds {outbox}"
        return None

    def logs_equal_server(self, agents: list[AgentProcess]) -> str | None:
        """The server's log holds every message posted, and each agent's log equals it:
        the same ids in the same (lamport, device, seq) order."""
        server = self.reader.log_keys()
        missing = set(self.said) - {key[0] for key in server}
        if missing:
            return f"the server lacks {len(missing)} of the {len(self.said)} messages posted"
        for agent in agents:
            mine = keys(agent.messages())
            if mine != server:
                return (f"{agent.name}'s log ({len(mine)} messages) differs from the "
                        f"server's ({len(server)})")
        return None

    def server_states(self, agents: list[AgentProcess]) -> str:
        return ", ".join(f"{a.name}: {a.state()['server']['state']}" for a in agents)

    def post(self, agent: AgentProcess, text: str) -> str:
        message_id = str(agent.send(text)["id"])
        self.said.append(message_id)
        print(f"  {agent.name} posted {text!r}", flush=True)
        return message_id

    # -- the steps --------------------------------------------------------------------------

    def trio(self) -> list[AgentProcess]:
        return list(self.agents.values())

    def everyone_joins(self) -> None:
        self.expect("every agent is connected to the server and has a connected data channel "
                    "to both others", lambda: self.links(self.trio()))

    def everyone_chats(self) -> None:
        for agent in self.trio():
            self.post(agent, f"hello from {agent.name}")
        said = list(self.said)
        self.expect("every agent holds all three messages", lambda: self.holds(self.trio(), said))
        self.expect("every outbox is 0: the server stored them all",
                    lambda: self.outboxes_empty(self.trio()))

    def server_killed(self) -> None:
        self.server.kill()
        print(f"  killed the server (pid {self.server.pid}) with SIGKILL", flush=True)

        def down() -> str | None:
            for agent in self.trio():
                server = agent.state()["server"]
                if server["connected"] and server["state"] != "down":
                    return f"{agent.name}'s server link is still {server['state']}"
            return None
        self.expect("every agent shows the server down", down)
        print(f"  server link: {self.server_states(self.trio())}", flush=True)
        self.expect("the data channels stay connected",
                    lambda: self.links(self.trio(), server=False))

    def written_meanwhile(self) -> None:
        message_id = self.post(self.bob, "bob here, written while the server is down")
        self.expect("every agent holds it, peer to peer",
                    lambda: self.holds(self.trio(), [message_id]))

        def waiting() -> str | None:
            outbox = self.bob.state()["server"]["outbox"]
            return None if outbox >= 1 else f"bob's outbox is {outbox}"
        self.expect("bob's outbox holds it for the server", waiting)
        counts = ", ".join(f"{a.name}: {a.state()['server']['outbox']}" for a in self.trio())
        print(f"  waiting for the server (outbox): {counts}", flush=True)

    def server_back(self) -> None:
        self.server.start(self.left())
        print(f"  the server is back on {self.server.url}/ (pid {self.server.pid})",
              flush=True)
        self.expect("every agent joined the server again", lambda: self.links(self.trio()))
        self.expect("every outbox is 0", lambda: self.outboxes_empty(self.trio()))
        self.expect("the server's log (history API) equals every agent's log",
                    lambda: self.logs_equal_server(self.trio()))
        print(f"  the server and every agent hold the same {len(self.said)} messages in the "
              f"same order", flush=True)

    def peer_killed(self) -> None:
        self.carol.kill()
        print(f"  killed carol (pid {self.carol.pid}) with SIGKILL", flush=True)
        pair = [self.alice, self.bob]

        def carol_gone() -> str | None:
            for agent in pair:
                peers = {p["device"]: p["state"] for p in agent.state()["peers"]}
                if peers.get(self.carol.device) == "connected":
                    return f"{agent.name}'s link to carol is still connected"
            return None
        self.expect("alice and bob see carol's link no longer connected", carol_gone)
        message_id = self.post(self.alice, "alice here, written while carol is down")
        self.expect("alice and bob hold it", lambda: self.holds(pair, [message_id]))
        self.carol.start(self.left())
        print(f"  carol restarted with her data dir (pid {self.carol.pid}), her UI is "
              f"again {self.carol.url}/", flush=True)
        self.expect("carol caught up: she holds every message",
                    lambda: self.holds([self.carol], self.said))
        self.expect("the mesh is whole again", lambda: self.links(self.trio()))
        self.expect("every outbox is 0 and every log equals the server's",
                    lambda: self.outboxes_empty(self.trio())
                    or self.logs_equal_server(self.trio()))

    def second_device(self) -> None:
        self.phone.start(self.left())
        print(f"  alice's second device (a new data dir, no --register): {self.phone.url}/ "
              f"(pid {self.phone.pid})", flush=True)

        def signed_in() -> str | None:
            state = self.phone.state()
            if state["user"] != "alice" or state["device"] == self.alice.device:
                return f"it is {state['user']}'s device {state['device']}"
            return None if state["server"]["connected"] else "it has not joined the server"
        self.expect("it is signed in as alice, with a device of its own", signed_in)
        self.expect("it holds the whole history (equal to the server's log)",
                    lambda: self.logs_equal_server([self.phone]))
        self.expect("all four devices are linked to each other",
                    lambda: self.links([*self.trio(), self.phone]))

    # -- the run ------------------------------------------------------------------------------

    def run(self, stepping: bool) -> list[Outcome]:
        """Tell the steps in order; stop at the first whose expected state is not reached."""
        outcomes: list[Outcome] = []
        total = len(self.steps)
        for number, (title, detail, act) in enumerate(self.steps, 1):
            if stepping:
                stepping = wait_for_enter()
            started = time.monotonic()
            self.deadline = started + self.timeout
            self.narrate(f"Step {number}/{total}: {title}. {detail}")
            try:
                act()
            except (Unmet, HttpError, ChildError) as exc:
                outcome = Outcome(number, title, time.monotonic() - started, str(exc))
                outcomes.append(outcome)
                self.narrate(f"Step {number}/{total} FAILED: {exc}")
                break
            outcome = Outcome(number, title, time.monotonic() - started)
            outcomes.append(outcome)
            self.narrate(f"Step {number}/{total} reached in {outcome.seconds:.1f} s")
        return outcomes


def wait_for_enter() -> bool:
    """Wait for Enter; False (and no more waiting) once stdin is closed."""
    print("-- press Enter for the next step --", flush=True)
    try:
        input()
    except EOFError:
        print("\n(stdin is closed: going on without waiting)", flush=True)
        return False
    return True
