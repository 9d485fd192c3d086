# -*- coding: utf-8 -*-
"""Filters that render service definitions: launchd property lists and systemd command lines.

``to_plist`` goes through Python's own ``plistlib`` (the format launchd reads, XML property list
1.0), so no template has to get XML escaping right. ``systemd_quote`` quotes one argument for an
``ExecStart=`` line by the rules of systemd.service(5), "Command lines".
"""

from __future__ import annotations

import plistlib

from ansible.errors import AnsibleFilterError


def _plain(value):
    """Ansible's lazy containers and tagged strings, as the plain types plistlib accepts."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    if value is None:
        raise AnsibleFilterError("to_plist: a property list cannot hold null (leave the key out instead)")
    raise AnsibleFilterError("to_plist: cannot store %s in a property list" % type(value).__name__)


def to_plist(value):
    """An XML property list (str) of ``value``, a dict of str/int/float/bool/list/dict.

    Raises AnsibleFilterError for null values and types a property list cannot hold.
    """
    return plistlib.dumps(_plain(value), fmt=plistlib.FMT_XML, sort_keys=True).decode("utf-8")


def systemd_quote(value):
    """``value`` as one double-quoted word of a systemd command line.

    Inside quotes systemd takes C-style backslash escapes; ``%`` starts a specifier and ``$`` a
    variable, so they are doubled. Raises AnsibleFilterError for a newline, which cannot be escaped.
    """
    text = str(value)
    if "\n" in text:
        raise AnsibleFilterError("systemd_quote: an argument cannot contain a newline: %r" % text)
    text = text.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%").replace("$", "$$")
    return '"%s"' % text


class FilterModule:
    """Service-definition filters."""

    def filters(self):
        return {"to_plist": to_plist, "systemd_quote": systemd_quote}
