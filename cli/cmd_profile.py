"""``atfr profile``: a checkpoint on a video list into a per-view log.

Exit status: 0 when every logged video was profiled (or at most ``--max-failed-fraction`` of
them failed); 2 for bad input (one ``error:`` line, nothing written); 3 when more than
``--max-failed-fraction`` of the logged videos failed; 4 when no video could be profiled; 130
when interrupted (what was profiled is on disk: ``--resume``). With 3 and 4 the summary is printed
and the log stays as written, the failed videos with their reasons.
"""

from __future__ import annotations

import typer

from atfr_cli.derive import config_command


def register(app: typer.Typer) -> None:
    from atfr_analysis.profile.config import ProfileConfig

    @config_command(app, "profile", ProfileConfig)
    def profile_cmd(cfg: dict) -> None:
        """Profile a checkpoint on real videos (PySlowFast multi-view test protocol) into a per-view log."""
        from atfr_analysis.profile.config import ProfileConfig
        from atfr_analysis.profile.run import run_profile

        out = cfg["out"]
        cfg = ProfileConfig(**cfg)
        try:
            summary = run_profile(cfg)
        except KeyboardInterrupt:
            # Ctrl-C or SIGTERM: the videos profiled so far are flushed. (Typer turns a
            # KeyboardInterrupt into a *returned* 130 that main() would drop: exit here.)
            typer.echo(
                f"error: interrupted; the videos profiled so far are in {out} (continue with --resume)", err=True
            )
            raise SystemExit(130) from None
        if not (summary.distributed and summary.shard[0] != 0):  # under torchrun, rank 0 prints the summary
            for line in summary.lines():
                typer.echo(line)
            if summary.rotation_warning():
                typer.echo(f"warning: {summary.rotation_warning()}", err=True)
            if summary.verdict():
                typer.echo(f"error: {summary.verdict()}", err=True)
        if summary.exit_code:
            raise SystemExit(summary.exit_code)
