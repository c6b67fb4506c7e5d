"""``tokn proxy ca``: the local CA the proxy signs intercepted hosts with."""

from __future__ import annotations

import shlex

import typer

from tokn.cli.common import cli_errors, console, err_console, fail, load_config_or_exit

ca_app = typer.Typer(
    suggest_commands=False,
    help="tokn's local CA: where it is, what it may sign, how to trust or rotate it.",
    no_args_is_help=True,
)

TRUST_HINTS = (
    ("Linux (Debian/Ubuntu)",
     "sudo cp {cert} /usr/local/share/ca-certificates/tokn.crt && sudo update-ca-certificates"),
    ("Linux (Fedora/RHEL/Arch)", "sudo trust anchor --store {cert}"),
    ("macOS",
     "sudo security add-trusted-cert -d -r trustRoot "
     "-k /Library/Keychains/System.keychain {cert}"),
    ("Windows", "certutil -user -addstore Root {cert}"),
)


@ca_app.command("path")
def path_cmd(
    bundle: bool = typer.Option(False, "--bundle",
                                help="Print the merged bundle (system roots + tokn CA)."),
) -> None:
    """Print the path of the CA certificate (created on first use)."""
    from tokn import ca

    cfg = load_config_or_exit()
    with cli_errors():
        files = ca.ensure_ca(cfg)
        out = ca.ensure_bundle(cfg) if bundle else files.cert_path
    typer.echo(str(out))


@ca_app.command("show")
def show_cmd() -> None:
    """Show the CA: subject, validity, SHA-256 fingerprint, name constraints, files."""
    from rich.text import Text

    from tokn import ca

    cfg = load_config_or_exit()
    with cli_errors():
        info = ca.ca_info(cfg)
    rows: list[tuple[str, str]] = [
        ("subject", info["subject"]),
        ("key", info["key_type"]),
        ("valid", f"{info['not_before']:%Y-%m-%d} to {info['not_after']:%Y-%m-%d} UTC"),
        ("SHA-256", info["fingerprint_sha256"]),
    ]
    if info["constrained"]:
        names = ", ".join(info["permitted_dns"] + info["permitted_ip"]) or "(none)"
        rows.append(("may sign", names + " (and their subdomains)"))
        if info["excluded"]:
            rows.append(("never signs", ", ".join(info["excluded"])))
    else:
        rows.append(("may sign", "any name (no name constraints)"))
    for label, key in (("certificate", "cert"), ("private key", "key"),
                       ("bundle", "bundle"), ("mitmproxy dir", "mitm_confdir")):
        rows.append((label, str(info["files"][key])))
    for label, value in rows:
        console.print(Text.assemble((f"{label:<14}", "bold"), value), soft_wrap=True)
    if info["outdated"]:
        err_console.print(
            f"[yellow]warning:[/] not covered by the CA's name constraints: "
            f"{', '.join(info['outdated'])}; run `tokn proxy ca regenerate`.",
            highlight=False, soft_wrap=True)
    elif info["constraints_wanted"] != info["constrained"]:
        want = "a constrained" if info["constraints_wanted"] else "an unconstrained"
        err_console.print(
            f"[yellow]note:[/] \\[ca] name_constraints asks for {want} CA; "
            "`tokn proxy ca regenerate` makes one.", highlight=False, soft_wrap=True)
    console.print("\n[bold]Trust it system-wide[/] (optional; the env block is enough for "
                  "most tools):", highlight=False)
    cert = str(info["files"]["cert"])
    for label, cmd in TRUST_HINTS:
        quoted = f'"{cert}"' if label == "Windows" else shlex.quote(cert)
        console.print(Text(f"  {label}: {cmd.format(cert=quoted)}"), soft_wrap=True)
    from tokn import data

    console.print(Text(f"  Details, removal and risks: {data.path('ca-readme')}"),
                  soft_wrap=True)


@ca_app.command("regenerate")
def regenerate_cmd(
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
) -> None:
    """Replace the CA with a new key and certificate (e.g. after changing intercept hosts)."""
    from tokn import ca

    cfg = load_config_or_exit()
    if not yes and not typer.confirm(
        "Replace tokn's CA? Everything that trusts the current one must trust the new one.",
        default=False,
    ):
        raise fail("aborted; the CA is unchanged.")
    with cli_errors():
        files = ca.regenerate_ca(cfg)
        fp = ca.fingerprint_sha256(files.cert_path.read_bytes())
    console.print(f"new CA {files.cert_path}\nSHA-256 {fp}", highlight=False, soft_wrap=True)
    err_console.print(
        "[yellow]warning:[/] clients must trust the new CA: re-run the system-wide trust "
        "step if you did it (see `tokn proxy ca show`), and restart a running `tokn proxy`. "
        "Shells using the env block keep working (same paths, bundle rebuilt).",
        highlight=False, soft_wrap=True)
