"""Assembles BuildmasterConfig from the farm's settings and the pool table."""

from __future__ import annotations

from pathlib import Path

from buildbot.plugins import secrets

from wheelwright.buildbot_patches.build_properties import PlainBuildProperties
from wheelwright.buildbot_patches.rest_write import write_rest_responses_on_the_reactor
from wheelwright.buildbot_patches.start_now import StartNewRequestsAtOnce
from wheelwright.changes.settings_changes import SettingsChanges
from wheelwright.changes.settings_git import SettingsFromGit, settings_poller
from wheelwright.changes.upstream_pages import SLICES, UpstreamReleases
from wheelwright.config.builders import make_builders, make_workers, master_builders, master_worker
from wheelwright.config.notifications import notifiers
from wheelwright.config.schedulers import make_schedulers
from wheelwright.farm import tls
from wheelwright.farm.database import tune_sqlite
from wheelwright.farm.settings import Farm
from wheelwright.publishing.outbox import KeptWheelPublisher
from wheelwright.www.auth import www_auth
from wheelwright.www.dashboard import NAME as DASHBOARD
from wheelwright.www.dashboard import make_app


def assemble(basedir: str) -> dict:
    # The master's basedir is <farm>/master; a checkconfig of the shipped file gets the defaults.
    farm = Farm.load(Path(basedir).resolve().parent)
    pools = farm.pools_here()
    runs_builds = "builds" in farm.roles
    builders = make_builders(farm, pools)
    tune_sqlite()
    write_rest_responses_on_the_reactor()
    return {
        "title": "Wheelwright",
        "titleURL": farm.ui_url,
        "buildbotURL": farm.ui_url,
        "workers": [*make_workers(farm, pools), master_worker(runs_builds)],
        # A master that only serves the UI takes no worker: Buildbot wants a worker port all the same
        # (its builders name workers), so it gets one nobody is told of, on loopback.
        "protocols": {
            "pb": {
                "port": tls.server_endpoint(farm) if runs_builds else "tcp:0:interface=127.0.0.1"
            }
        },
        "builders": [*builders, *master_builders(farm)],
        "schedulers": [
            *make_schedulers([b.name for b in builders]),
            *(
                [SettingsFromGit("settings-git", farm, [b.name for b in builders])]
                if farm.settings_git
                else []
            ),
        ],
        "services": [
            KeptWheelPublisher(farm),
            StartNewRequestsAtOnce(),
            PlainBuildProperties(),
            *notifiers(farm.notifications),
        ]
        if runs_builds
        else [],
        "change_source": [
            *(
                source(farm, pollInterval=interval, pollAtLaunch=True)
                for source, interval in (
                    (UpstreamReleases, farm.upstream_poll_interval / SLICES),
                    (SettingsChanges, 0 if farm.settings_git else farm.settings_poll_interval),
                )
                if interval
            ),
            *([settings_poller(farm)] if farm.settings_git and farm.settings_poll_interval else []),
        ],
        # `wheelwright up` makes the secrets folder; a checkconfig of the shipped file has none.
        "secretsProviders": [secrets.SecretInAFile(dirname=str(farm.secrets_dir))]
        if farm.secrets_dir.is_dir()
        else [],
        "www": {
            # A builds-only master still answers the REST API (the `wheelwright` command's), on
            # loopback; its pages are the UI master's to show.
            "port": f"tcp:{farm.ui_port}:interface={farm.host if 'ui' in farm.roles else '127.0.0.1'}",
            "plugins": {
                "waterfall_view": {},
                "console_view": {},
                "grid_view": {},
                "wsgi_dashboards": [
                    {
                        "name": DASHBOARD,
                        "caption": "Packages",
                        "app": make_app(farm),
                        "order": 1,
                        "icon": "cube",
                    }
                ],
            },
            **www_auth(farm.www_users),
        },
        "db": {"db_url": farm.db_url},
        **(
            {
                "multiMaster": True,
                "mq": {"type": "wamp", "router_url": farm.mq_router, "realm": farm.mq_realm},
            }
            if farm.multi_master
            else {}
        ),
        "buildbotNetUsageData": None,
    }
