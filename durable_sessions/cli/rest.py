"""``sessions``, ``dead-letters``, ``endpoints``, ``keys``: thin REST clients of the control
plane."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, NoReturn

import httpx
import typer

from durable_sessions.settings import Settings

sessions_app = typer.Typer(help="Inspect and drive sessions through the control plane.")
dead_letters_app = typer.Typer(help="Inspect and replay dead letters.")
endpoints_app = typer.Typer(help="See the endpoints served and resume a faulted datagram listener.")
keys_app = typer.Typer(help="Create, list and revoke API keys with roles (admin keys only).")

JsonOption = Annotated[bool, typer.Option("--json", help="Print the raw JSON.")]


def _fail(message: str) -> NoReturn:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(1)


def _key(settings: Settings) -> str:
    key = settings.api_key.get_secret_value() or next(iter(settings.api_key_list()), "")
    path = Path(settings.api_keys_file)
    if not key and path.is_file():
        key = next((line.strip() for line in path.read_text().splitlines() if line.strip()), "")
    if not key:
        _fail(f"no API key: set DS_API_KEY, or run `durable-sessions up` to create {path}")
    return key


def call(method: str, path: str, *, json_body: Any = None, params: Any = None) -> Any:
    """Call the control plane; print a problem's title and detail and exit on error."""
    settings = Settings()
    given = {k: v for k, v in (params or {}).items() if v is not None and v != []}
    try:
        response = httpx.request(
            method,
            settings.api_url.rstrip("/") + path,
            json=json_body,
            params=given,
            headers={"Authorization": f"Bearer {_key(settings)}"},
            timeout=70.0,
        )
    except httpx.HTTPError as e:
        _fail(
            f"cannot reach the control plane at {settings.api_url} ({e}); is "
            "`durable-sessions up` running? (DS_API_URL sets the address)"
        )
    if response.status_code >= 400:
        try:
            problem = response.json()
            _fail(f"{problem.get('title', response.status_code)}: {problem.get('detail', '')}")
        except ValueError:
            _fail(f"HTTP {response.status_code}: {response.text[:200]}")
    return None if response.status_code == 204 else response.json()


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain text table with aligned columns."""
    cells = [[str("" if v is None else v) for v in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(line.rstrip() for line in lines)


def _short_time(value: str | None) -> str:
    return "" if not value else value.replace("T", " ")[:19]


def _echo_session(session: dict[str, Any]) -> None:
    counters = session["counters"]
    fault = session.get("fault") or {}
    rows = [
        ("id", session["id"]),
        ("state", session["state"]),
        ("contract", f"{session['contract']} on endpoint {session['endpoint']}"),
        ("labels", ", ".join(f"{k}={v}" for k, v in session["labels"].items()) or "-"),
        ("created", _short_time(session["created_at"])),
        ("last activity", _short_time(session["last_activity_at"])),
        ("expires", _short_time(session["expires_at"]) or "-"),
        ("watermarks", f"sent {session['last_sent_seq']}, applied {session['last_applied_seq']}"),
        (
            "counters",
            f"sent {counters['sent']}, applied {counters['applied']}, parked "
            f"{counters['parked']}, duplicates {counters['duplicates']}, dead {counters['dead']}",
        ),
    ]
    if fault:
        rows.append(("fault", f"at seq {fault['seq']}: {fault['reason']}"))
    if session.get("end_reason"):
        rows.append(("ended because", session["end_reason"]))
    rows.append(("instance state", json.dumps(session.get("instance_state"))))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        typer.echo(f"{key.rjust(width)}  {value}")


@sessions_app.command("list")
def list_sessions(
    state: Annotated[str | None, typer.Option(help="open, closing, closed, faulted, ...")] = None,
    contract: Annotated[str | None, typer.Option(help="Contract name.")] = None,
    label: Annotated[list[str] | None, typer.Option(help="key=value (repeatable).")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
    cursor: Annotated[str | None, typer.Option(help="From a previous page.")] = None,
    as_json: JsonOption = False,
) -> None:
    """List sessions, oldest first."""
    params = {"state": state, "contract": contract, "label": label or [], "limit": limit}
    page = call("GET", "/v1/sessions", params={**params, "cursor": cursor})
    if as_json:
        typer.echo(json.dumps(page, indent=2))
        return
    typer.echo(
        table(
            ["id", "state", "contract", "sent", "applied", "parked", "dead", "last activity"],
            [
                (
                    s["id"],
                    s["state"],
                    s["contract"],
                    s["counters"]["sent"],
                    s["counters"]["applied"],
                    s["counters"]["parked"],
                    s["counters"]["dead"],
                    _short_time(s["last_activity_at"]),
                )
                for s in page["items"]
            ],
        )
    )
    if page["next_cursor"]:
        typer.echo(f"\nmore: --cursor {page['next_cursor']}")


@sessions_app.command("show")
def show_session(session_id: str, as_json: JsonOption = False) -> None:
    """Show a session: state, watermarks, counters, fault, instance state."""
    session = call("GET", f"/v1/sessions/{session_id}")
    if as_json:
        typer.echo(json.dumps(session, indent=2))
    else:
        _echo_session(session)


@sessions_app.command("close")
def close_session(session_id: str) -> None:
    """Close gracefully: pending messages are applied, then the session is closed."""
    _echo_session(call("POST", f"/v1/sessions/{session_id}/close"))


@sessions_app.command("terminate")
def terminate_session(
    session_id: str,
    reason: Annotated[
        str, typer.Option(help="Kept with the session.")
    ] = "terminated by an operator",
) -> None:
    """Terminate now: pending messages become dead letters."""
    _echo_session(
        call("POST", f"/v1/sessions/{session_id}/terminate", json_body={"reason": reason})
    )


@sessions_app.command("resume")
def resume_session(
    session_id: str,
    action: Annotated[str, typer.Option(help="retry the failed message, or skip it.")],
) -> None:
    """Resume a faulted session."""
    _echo_session(call("POST", f"/v1/sessions/{session_id}/resume", json_body={"action": action}))


@dead_letters_app.command("list")
def list_dead_letters(
    session: Annotated[str | None, typer.Option(help="Session id.")] = None,
    reason: Annotated[str | None, typer.Option(help="poison, rejected, terminated, ...")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
    cursor: Annotated[str | None, typer.Option(help="From a previous page.")] = None,
    as_json: JsonOption = False,
) -> None:
    """List dead letters, oldest first."""
    params = {"session_id": session, "reason": reason, "limit": limit, "cursor": cursor}
    page = call("GET", "/v1/dead-letters", params=params)
    if as_json:
        typer.echo(json.dumps(page, indent=2))
        return
    typer.echo(
        table(
            ["id", "reason", "session", "seq", "operation", "attempts", "replayed as", "detail"],
            [
                (
                    d["id"],
                    d["reason"],
                    d["session_id"] or "-",
                    d["seq"] or "-",
                    d["operation"],
                    d["attempts"],
                    d["replay_message_id"] or "-",
                    (d["detail"] or "")[:60],
                )
                for d in page["items"]
            ],
        )
    )
    if page["next_cursor"]:
        typer.echo(f"\nmore: --cursor {page['next_cursor']}")


@dead_letters_app.command("replay")
def replay_dead_letters(
    dead_letter_ids: Annotated[list[str] | None, typer.Argument(help="Dead letter ids.")] = None,
    session: Annotated[
        str | None, typer.Option(help="Replay every dead letter of this session instead.")
    ] = None,
    into: Annotated[
        str | None,
        typer.Option(help="new_session (a session's dead letters, in order) or datagrams."),
    ] = None,
) -> None:
    """Replay dead letters into a new session in their original order, or as datagrams."""
    if bool(dead_letter_ids) == (session is not None):
        _fail("name dead letter ids, or --session, not both")
    body: dict[str, Any] = {"into": into} if into else {}
    if session is not None:
        replayed = call(
            "POST", "/v1/dead-letters/replay", json_body={**body, "session_id": session}
        )
    elif dead_letter_ids and len(dead_letter_ids) == 1:
        replayed = call("POST", f"/v1/dead-letters/{dead_letter_ids[0]}/replay", json_body=body)
    else:
        replayed = call(
            "POST", "/v1/dead-letters/replay", json_body={**body, "ids": dead_letter_ids}
        )
    where = f"into session {replayed['session_id']}" if replayed["session_id"] else "as datagrams"
    typer.echo(f"replayed {len(replayed['messages'])} {where}")
    for m in replayed["messages"]:
        seq = f"seq {m['seq']}: " if m["seq"] else ""
        typer.echo(f"  {seq}message {m['message_id']} is {m['status']}")


def _listener(endpoint: dict[str, Any]) -> str:
    fault = endpoint["fault"]
    if fault is None:
        return endpoint["datagram_listener"] or "-"
    return f"faulted at message {fault['message_id']}: {fault['reason']}"


@endpoints_app.command("list")
def list_endpoints(as_json: JsonOption = False) -> None:
    """List the endpoints, with their datagram listener open or faulted."""
    found = call("GET", "/v1/endpoints")
    if as_json:
        typer.echo(json.dumps(found, indent=2))
        return
    typer.echo(
        table(
            ["name", "contract", "binding", "sessions", "datagram listener"],
            [
                (
                    e["name"],
                    e["contract"],
                    e["binding"],
                    "yes" if e["sessions"] else "no",
                    _listener(e),
                )
                for e in found
            ],
        )
    )


@endpoints_app.command("resume")
def resume_listener(
    name: str,
    action: Annotated[str, typer.Option(help="retry the datagram it stopped at, or skip it.")],
) -> None:
    """Resume a faulted datagram listener."""
    resumed = call("POST", f"/v1/endpoints/{name}/resume", json_body={"action": action})
    typer.echo(
        f"endpoint {name}: datagram listener open; message {resumed['message_id']} is "
        f"{resumed['status'] or 'gone'}"
    )


@keys_app.command("create")
def create_key(
    name: str,
    role: Annotated[str, typer.Option(help="admin, operator, sender or reader.")],
    contract: Annotated[
        str | None, typer.Option(help="The one contract the key may act on.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Create a key; it is printed this once (the control plane keeps only its digest)."""
    body = {"name": name, "role": role, **({"contract": contract} if contract else {})}
    created = call("POST", "/v1/keys", json_body=body)
    if as_json:
        typer.echo(json.dumps(created, indent=2))
        return
    scope = f" on contract {created['contract']}" if created["contract"] else ""
    typer.echo(f"key {name} ({created['role']}{scope}), shown this once:\n\n    {created['key']}\n")


@keys_app.command("list")
def list_keys(as_json: JsonOption = False) -> None:
    """List the stored keys: name, role, scope, prefix, created, last used (never the key)."""
    found = call("GET", "/v1/keys")
    if as_json:
        typer.echo(json.dumps(found, indent=2))
        return
    typer.echo(
        table(
            ["name", "role", "contract", "prefix", "created", "last used"],
            [
                (
                    k["name"],
                    k["role"],
                    k["contract"] or "-",
                    k["prefix"],
                    _short_time(k["created_at"]),
                    _short_time(k["last_used_at"]) or "never",
                )
                for k in found
            ],
        )
    )


@keys_app.command("revoke")
def revoke_key(name: str) -> None:
    """Revoke a key: every control plane refuses it from the next request on."""
    call("DELETE", f"/v1/keys/{name}")
    typer.echo(f"key {name} revoked")
