"""What every ``hhh`` command shares: the settings it runs with and where its logs go."""

from __future__ import annotations

import argparse
import logging
import sys

import msgspec

from gateway.settings import Settings, load_settings

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), format=LOG_FORMAT, datefmt="%Y-%m-%d %H:%M:%S", stream=sys.stderr
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)


def settings_for(args: argparse.Namespace) -> Settings:
    """The config file's settings, with the command line's --host, --port and --log-level over them."""
    settings = load_settings(args.config)
    server = settings.server
    overrides = {
        "host": args.host if getattr(args, "host", None) else server.host,
        "port": args.port if getattr(args, "port", None) else server.port,
        "log_level": getattr(args, "log_level", None) or server.log_level,
    }
    return msgspec.structs.replace(settings, server=msgspec.structs.replace(server, **overrides))
