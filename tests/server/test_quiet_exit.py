"""A script that ends without stopping its server exits quietly (no traceback from the ASGI app)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import asyncio
    from mimc_rx import MIMCUser
    from mimc_rx.server import LocalServer

    async def main():
        server = LocalServer(db=":memory:")
        await server.start()
        alice = MIMCUser("alice", app_id=server.app.app_id,
                         token_fetcher=server.token_fetcher("alice"), url=server.ws_url)
        assert (await alice.login()).online
        print("done")  # no logout, no server.stop(): asyncio.run cancels what is left

    asyncio.run(main())
    """
)


def test_a_script_that_forgets_server_stop_exits_quietly() -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "done"
    assert "Traceback" not in result.stderr
    assert "CancelledError" not in result.stderr
