"""Print the first error line of every log Ray wrote for one start, as a JSON list.

    python start_errors.py SINCE TEMP_DIR [SERVICE_LOG...]

SINCE is the start's time (seconds since the epoch, this node's clock); TEMP_DIR is Ray's temp dir
(saf_ray_temp_dir): its newest session's logs/ is read; SERVICE_LOG are the stdout/stderr files of
the launchd job or systemd unit (saf_ray_log_dir/ray.out, ray.err), which launchd appends to.
Only files changed since SINCE count, and in each only lines stamped at or after SINCE (Ray's C++
lines start ``[YYYY-MM-DD HH:MM:SS,mmm``, its Python lines ``YYYY-MM-DD HH:MM:SS,mmm``; an unstamped
line, such as a traceback's, takes the stamp of the line before it). Ray's periodic state dumps
(``[state-dump]``) are left out: they print counters named like errors every 10 s.

Output: ``[{"file": "raylet.out", "line": "..."}, ...]``, one entry per file that has an error
line, in LOGS order then the service logs. Why: a start that dies leaves its reason in whichever of
these Ray wrote it to (Ray's own ValueError in the job's stderr, the agent's in
dashboard_agent.log, the raylet's fate-sharing in raylet.out), and one line from each names it.
Runs on Python 3.9 and later, stdlib only.
"""
import datetime
import json
import os
import re
import sys

#: Files of a session's logs/ that a start writes, in the order a reader wants them.
LOGS = ("raylet.err", "raylet.out", "gcs_server.err", "gcs_server.out", "dashboard_agent.err",
        "dashboard_agent.log", "runtime_env_agent.err", "runtime_env_agent.log", "dashboard.err", "dashboard.log")
STAMP = re.compile(r"^\[?(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2})")
#: glog's E/F severities ("[... E 123 456]"), Python's ERROR/CRITICAL, exceptions and Ray's own words.
ERROR = re.compile(r"\s[EF] \d+ \d+\]|\b(ERROR|CRITICAL|FATAL)\b|Traceback|\w+(Error|Exception):|Check failed|fate-shares")
MAX_LINE = 400


def first_error(lines, since):
    """The first error line stamped at or after ``since`` (a datetime), or None."""
    current = None
    for line in lines:
        stamp = STAMP.match(line)
        if stamp:
            current = datetime.datetime.strptime(stamp.group(1), "%Y-%m-%d %H:%M:%S")
        if current is not None and current < since:
            continue
        if "[state-dump]" in line:
            continue
        if ERROR.search(line):
            return line.strip()[:MAX_LINE]
    return None


def newest_session_logs(temp_dir):
    """The logs/ directory of the newest session under Ray's temp dir, or None. Session names
    (``session_YYYY-MM-DD_HH-MM-SS_ffffff_PID``) sort by their start; a worker reuses the head's."""
    latest = os.path.join(temp_dir, "session_latest", "logs")  # Ray's link to the node's current session
    if os.path.isdir(latest):
        return latest
    try:
        sessions = [os.path.join(temp_dir, name) for name in os.listdir(temp_dir) if name.startswith("session_2")]
    except OSError:
        return None
    sessions = [path for path in sessions if os.path.isdir(os.path.join(path, "logs"))]
    return os.path.join(max(sessions), "logs") if sessions else None


def newest_numbered(logs, name):
    """The newest of ``name`` and its numbered siblings in ``logs``: a node restarted within one
    session writes ``raylet.1.out``, ``raylet.2.out``, ... beside ``raylet.out``. None when absent."""
    stem, ext = os.path.splitext(name)
    pattern = re.compile(re.escape(stem) + r"(\.\d+)?" + re.escape(ext) + "$")
    try:
        found = [os.path.join(logs, entry) for entry in os.listdir(logs) if pattern.match(entry)]
    except OSError:
        return None
    return max(found, key=os.path.getmtime) if found else None


def start_errors(since_epoch, temp_dir, service_logs):
    """``[{'file', 'line'}]``: the first error line of each log changed since the start."""
    since = datetime.datetime.fromtimestamp(since_epoch).replace(microsecond=0)
    logs = newest_session_logs(temp_dir)
    paths = [path for path in (newest_numbered(logs, name) for name in LOGS) if path] if logs else []
    found = []
    for path in paths + list(service_logs):
        try:
            if os.path.getmtime(path) < since_epoch:
                continue
            with open(path, errors="replace") as handle:
                line = first_error(handle, since)
        except OSError:
            continue
        if line:
            found.append({"file": os.path.basename(path), "line": line})
    return found


def main(argv):
    print(json.dumps(start_errors(float(argv[1]), argv[2], argv[3:])))


if __name__ == "__main__":
    main(sys.argv)
