"""``vmportal ship``: the sender for tools that cannot sign webhooks themselves.

It runs on the sensor host (Suricata, Zeek, Wazuh manager), follows one log file, keeps the alert
records of it, and posts them to ``POST /api/v1/alerts/{source}`` in signed batches (Standard
Webhooks, :mod:`vmportal.alerts.signing`), with retries, back-pressure and a saved position, so that
across portal outages, log rotations and its own crashes every alert line arrives once.

Of the portal it imports only :mod:`vmportal.alerts.signing`, and of the rest only ``requests``: the
application (database, web framework) is neither needed nor started on a sensor.

* :mod:`~vmportal.shipper.config` — the settings (TOML and command line);
* :mod:`~vmportal.shipper.formats` — which lines are alerts, per log format;
* :mod:`~vmportal.shipper.tail` — following the file across rotation and truncation;
* :mod:`~vmportal.shipper.state` — the saved position and the journal of the batch in flight;
* :mod:`~vmportal.shipper.delivery` — one post and what its answer means;
* :mod:`~vmportal.shipper.deadletter` — what was moved past without being stored as an alert;
* :mod:`~vmportal.shipper.runner` — the loop: :func:`run`;
* :mod:`~vmportal.shipper.cli` — the ``ship`` command.
"""

from vmportal.shipper.config import ConfigError, ShipperConfig, load
from vmportal.shipper.formats import LogFormat
from vmportal.shipper.runner import Shipper, Stats, run

__all__ = ["ConfigError", "LogFormat", "Shipper", "ShipperConfig", "Stats", "load", "run"]
