#!/usr/bin/env python3
# -*- coding: utf-8 -*-
# SAF: Ansible provisioning of a Ray 2.49.2 + MLX 0.29.1 cluster.
"""The end of a Ray worker process that died running a task: its exit code or signal, and its logs.

Run by roles/cluster_verify on the worker node whose probe task failed with Ray's
``WorkerCrashedError`` (which says only "The worker died unexpectedly while executing this task.
Check python-core-worker-*.log files for more information."). Standard library only, Python 3.9:

    worker_logs.py TEMP_DIR JOB_ID TASK_NAME LINES

prints one JSON object (see :func:`report`) and exits 0, also when it finds nothing.

Where Ray 2.49.2 leaves what is known of a dead worker, on the worker's own node (observed on
Linux, for an abort, ``os._exit``, ``sys.exit`` and SIGKILL of a task's worker process), under
``TEMP_DIR/session_latest/logs/`` (``logs/old/`` once Ray's log monitor has moved them):

- ``worker-<worker ID>-<job ID>-<pid>.out`` and ``.err``: the worker's stdout and stderr. Ray writes
  ``:job_id:<job ID>`` to both when the worker takes work of a job, and ``:task_name:<function>`` at
  each task it starts, so the driver's job ID and the task name find the worker (the job ID in the
  *file name* is ``ffffffff`` for a worker started before the job). On a fatal signal the ``.err`` gets abseil's
  ``*** SIGABRT received at time=... ***`` (Ray's failure signal handler) and Python's
  ``Fatal Python error: Aborted`` (faulthandler, which Ray enables in workers), then the stack.
- ``python-core-worker-<worker ID>_<pid>.log``: the core worker's own log, with the same abseil lines.
- ``events/event_RAYLET.log``: one JSON object per line; a ``RAY_WORKER_FAILURE`` event, whose
  ``custom_fields.worker_id`` is the worker's, has in its ``message`` ``Worker PID: <pid> Worker exit
  type: SYSTEM_ERROR Worker exit detail: ...``. The detail carries the exit code when the worker
  exited on its own through Python (``Worker exits with an exit code 4.``); for a crash or a kill
  the raylet only sees the connection drop (``Worker unexpectedly exits with a connection error
  code 2. End of file. ...``: 2 is not an exit code).

A SIGKILL (the kernel's OOM killer, macOS's memory-pressure kill, ``kill -9``) and ``os._exit(n)``
leave neither a signal line nor an exit code anywhere: the summary says so.
"""

from __future__ import absolute_import, division, print_function

import json
import os
import re
import signal
import sys

WORKER_FILE = re.compile(r'^worker-(?P<worker_id>[0-9a-f]+)-(?P<job>[0-9a-f]+)-(?P<pid>\d+)\.(?P<stream>out|err)$')
ABSL_SIGNAL = re.compile(r'\*\*\* (SIG[A-Z0-9]+) received at time=')
ABSL_SIGNUM = re.compile(r'\*\*\* Signal (\d+) received at time=')
PYTHON_FATAL = re.compile(r'^Fatal Python error: (.+?)\s*$', re.M)
EXIT_CODE = re.compile(r'exits with an exit code (-?\d+)')
EXIT_TYPE = re.compile(r'Worker exit type: (\S+)(?: Worker exit detail: (.*))?$', re.S)
#: faulthandler's names of the fatal signals it catches (Python's Modules/faulthandler.c).
PYTHON_FATAL_SIGNALS = {
    'Aborted': 'SIGABRT',
    'Segmentation fault': 'SIGSEGV',
    'Bus error': 'SIGBUS',
    'Floating point exception': 'SIGFPE',
    'Illegal instruction': 'SIGILL',
}
#: At most this much of the end of a file is read (a worker that ran many tasks has long logs).
READ_LIMIT = 4 * 1024 * 1024


def read_text(path, limit=READ_LIMIT):
    """The last ``limit`` bytes of ``path`` as text (undecodable bytes replaced), or '' when unreadable."""
    try:
        with open(path, 'rb') as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(size - limit, 0))
            return handle.read().decode('utf-8', 'replace')
    except OSError:
        return ''


def tail(path, lines):
    """The last ``lines`` lines of ``path`` (a list of strings without newlines)."""
    text = read_text(path, limit=max(lines, 1) * 2048)
    return text.splitlines()[-lines:] if lines > 0 else []


def session_dir(temp_dir):
    """Ray's current session directory under ``temp_dir``: ``session_latest`` (a link), else the newest
    ``session_*`` directory, else None."""
    latest = os.path.join(temp_dir, 'session_latest')
    if os.path.isdir(latest):
        return os.path.realpath(latest)
    try:
        sessions = [os.path.join(temp_dir, name) for name in os.listdir(temp_dir) if name.startswith('session_')]
    except OSError:
        return None
    sessions = [path for path in sessions if os.path.isdir(path)]
    return max(sessions, key=os.path.getmtime) if sessions else None


def log_dirs(session):
    """``logs`` and ``logs/old`` of a session, those that exist."""
    return [path for path in (os.path.join(session, 'logs'), os.path.join(session, 'logs', 'old'))
            if os.path.isdir(path)]


def worker_files(directories):
    """Every ``worker-<id>-<job>-<pid>.out|err`` in ``directories``: dicts with ``path``, ``worker_id``,
    ``pid`` (int), ``stream`` (out/err) and ``mtime``."""
    found = []
    for directory in directories:
        try:
            names = os.listdir(directory)
        except OSError:
            continue
        for name in names:
            match = WORKER_FILE.match(name)
            if not match:
                continue
            path = os.path.join(directory, name)
            try:
                mtime = os.path.getmtime(path)
            except OSError:
                continue
            found.append({'path': path, 'worker_id': match.group('worker_id'), 'pid': int(match.group('pid')),
                          'stream': match.group('stream'), 'mtime': mtime})
    return found


def ran_task(text, job_id, task_name):
    """Whether a worker's ``.out``/``.err`` text shows it starting ``task_name`` for job ``job_id``.

    Ray writes ``:job_id:<job>`` when the worker takes work of a job and ``:task_name:<name>`` at each
    task it starts, so a reused worker has one ``:job_id:`` line and several ``:task_name:`` lines
    after it (observed: ``:job_id:01000000``, ``:task_name:mlx_matmul_task`` twice, ``:task_name:crash``)."""
    job = None
    for line in text.splitlines():
        if line.startswith(':job_id:'):
            job = line[len(':job_id:'):].strip()
        elif line.startswith(':task_name:') and job == job_id and line[len(':task_name:'):].strip() == task_name:
            return True
    return False


def find_worker(directories, job_id, task_name):
    """The worker that ran ``task_name`` for job ``job_id``: its ``worker_id``, ``pid`` and files
    (``err``, ``out``, ``core``: paths or None), found by Ray's ``:job_id:``/``:task_name:`` markers
    (:func:`ran_task`); the most recently written one when several did. None when none did."""
    files = worker_files(directories)
    matches = [item for item in files if ran_task(read_text(item['path']), job_id, task_name)]
    if not matches:
        return None
    best = max(matches, key=lambda item: item['mtime'])
    chosen = {'worker_id': best['worker_id'], 'pid': best['pid'], 'err': None, 'out': None, 'core': None}
    for item in files:
        if item['worker_id'] == best['worker_id'] and item['pid'] == best['pid']:
            chosen[item['stream']] = item['path']
    core_name = 'python-core-worker-%s_%d.log' % (best['worker_id'], best['pid'])
    for directory in directories:
        if os.path.isfile(os.path.join(directory, core_name)):
            chosen['core'] = os.path.join(directory, core_name)
            break
    return chosen


def raylet_event(session, worker_id):
    """The raylet's ``RAY_WORKER_FAILURE`` event of ``worker_id`` (its ``message``), or None."""
    path = os.path.join(session, 'logs', 'events', 'event_RAYLET.log')
    message = None
    for line in read_text(path).splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and (event.get('custom_fields') or {}).get('worker_id') == worker_id:
            message = event.get('message') or message
    return message


def signal_in(texts):
    """``(signal name, the line that says so)`` from a worker's logs, or ``(None, None)``.

    abseil's ``*** SIGABRT received at time=...`` first, then ``*** Signal 6 received ...``, then
    Python's ``Fatal Python error: Aborted``. Ray's own advice text ("killed by SIGKILL by OOM
    killer") is never taken for a signal."""
    for text in texts:
        match = ABSL_SIGNAL.search(text)
        if match:
            return match.group(1), _line_of(text, match)
    for text in texts:
        match = ABSL_SIGNUM.search(text)
        if match:
            number = int(match.group(1))
            try:
                name = signal.Signals(number).name
            except ValueError:
                name = 'signal %d' % number
            return name, _line_of(text, match)
    for text in texts:
        match = PYTHON_FATAL.search(text)
        if match and match.group(1) in PYTHON_FATAL_SIGNALS:
            return PYTHON_FATAL_SIGNALS[match.group(1)], _line_of(text, match)
    return None, None


def _line_of(text, match):
    start = text.rfind('\n', 0, match.start()) + 1
    end = text.find('\n', match.end())
    return text[start:end if end >= 0 else len(text)].strip()


def exit_of(message):
    """``(exit type, exit detail, exit code or None)`` from the raylet's failure message."""
    if not message:
        return None, None, None
    match = EXIT_TYPE.search(message)
    exit_type, detail = None, None
    if match:
        exit_type = match.group(1)
        detail = (match.group(2) or '').strip() or None
    code = EXIT_CODE.search(detail or message)
    return exit_type, detail, int(code.group(1)) if code else None


def report(temp_dir, job_id, task_name, lines):
    """What is known of the worker of ``job_id`` that ran ``task_name`` on this node, as a dict:

    ``found`` (bool), ``session``, ``worker_id``, ``pid``, ``signal`` (e.g. ``SIGABRT``) and
    ``signal_line``, ``exit_code``, ``exit_type``, ``exit_detail``, ``files`` (``[{'path', 'lines'}]``:
    the last ``lines`` lines of its ``.err``, ``.out`` and core worker log) and ``summary`` (text).
    """
    result = {'found': False, 'session': None, 'worker_id': None, 'pid': None, 'signal': None,
              'signal_line': None, 'exit_code': None, 'exit_type': None, 'exit_detail': None, 'files': []}
    session = session_dir(temp_dir)
    result['session'] = session
    if session is None:
        result['summary'] = 'no Ray session directory under %s' % temp_dir
        return result
    directories = log_dirs(session)
    worker = find_worker(directories, job_id, task_name)
    if worker is None:
        newest = sorted((item for item in worker_files(directories) if item['stream'] == 'err'),
                        key=lambda item: item['mtime'])[-3:]
        result['summary'] = ('no worker log of job %s with task %s under %s (newest worker logs: %s)'
                             % (job_id, task_name, os.path.join(session, 'logs'),
                                ', '.join(os.path.basename(item['path']) for item in newest) or 'none'))
        return result
    result.update(found=True, worker_id=worker['worker_id'], pid=worker['pid'])
    texts = [read_text(worker[key]) for key in ('err', 'core') if worker[key]]
    result['signal'], result['signal_line'] = signal_in(texts)
    result['exit_type'], result['exit_detail'], result['exit_code'] = exit_of(raylet_event(session, worker['worker_id']))
    for key in ('err', 'out', 'core'):
        if worker[key]:
            result['files'].append({'path': worker[key], 'lines': tail(worker[key], lines)})
    result['summary'] = summary(result)
    return result


def summary(result):
    """One readable paragraph of :func:`report`'s findings, then each file's last lines."""
    if result['signal']:
        how = 'killed by %s (%s)' % (result['signal'], result['signal_line'])
    elif result['exit_code'] is not None:
        how = 'exited with code %d' % result['exit_code']
    else:
        how = ('exit code and signal not recorded: Ray saw only its connection drop, which a SIGKILL (the OOM '
               'killer, macOS memory pressure, kill -9) or os._exit leaves')
    text = 'worker process %s (Ray worker ID %s) %s' % (result['pid'], result['worker_id'], how)
    if result['exit_type']:
        text += '; Ray: exit type %s%s' % (result['exit_type'],
                                           ', "%s"' % result['exit_detail'] if result['exit_detail'] else '')
    for item in result['files']:
        text += '\nlast %d lines of %s:\n%s' % (len(item['lines']), item['path'],
                                                '\n'.join('  ' + line for line in item['lines']) or '  (empty)')
    return text


def main(argv):
    if len(argv) != 4:
        print('usage: worker_logs.py TEMP_DIR JOB_ID TASK_NAME LINES', file=sys.stderr)
        return 2
    temp_dir, job_id, task_name, lines = argv
    print(json.dumps(report(temp_dir, job_id, task_name, int(lines)), sort_keys=True))
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
