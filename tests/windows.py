"""Windows command lines read back as Windows reads them: cmd's carets, then argv splitting."""

from __future__ import annotations


def split_windows(cmdline: str) -> list[str]:
    """Split a command line as Windows programs do (CommandLineToArgvW / the C runtime)."""
    args: list[str] = []
    i, n = 0, len(cmdline)
    while i < n:
        while i < n and cmdline[i] in " \t":
            i += 1
        if i >= n:
            break
        arg: list[str] = []
        quoted = False
        while i < n:
            char = cmdline[i]
            if char == "\\":
                j = i
                while j < n and cmdline[j] == "\\":
                    j += 1
                slashes = j - i
                if j < n and cmdline[j] == '"':
                    arg.append("\\" * (slashes // 2))
                    if slashes % 2:
                        arg.append('"')
                        i = j + 1
                    else:
                        i = j
                else:
                    arg.append("\\" * slashes)
                    i = j
                continue
            if char == '"':
                if quoted and i + 1 < n and cmdline[i + 1] == '"':
                    arg.append('"')
                    i += 2
                    continue
                quoted = not quoted
                i += 1
                continue
            if char in " \t" and not quoted:
                break
            arg.append(char)
            i += 1
        args.append("".join(arg))
    return args


def cmd_unescape(line: str) -> str:
    """What cmd.exe hands a program for a pasted line: carets outside quotes removed."""
    out, quoted, i = [], False, 0
    while i < len(line):
        char = line[i]
        if char == '"':
            quoted = not quoted
        elif char == "^" and not quoted and i + 1 < len(line):
            i += 1
            char = line[i]
        out.append(char)
        i += 1
    return "".join(out)
