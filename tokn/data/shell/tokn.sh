# tokn shell integration for sh, bash and zsh.
#
#   . /path/to/tokn.sh                 # in ~/.bashrc, ~/.zshrc or ~/.profile
#                                      # (`tokn paths shell-sh` prints the path)
#   tokn_on                            # this shell now goes through the tokn proxy
#   tokn_off                           # and no longer does
#
# TOKN_BIN overrides the command (default: tokn).  Arguments to tokn_on are
# passed to `tokn proxy env`.

_tokn_shell() {
    if [ -n "${ZSH_VERSION-}" ]; then
        echo zsh
    elif [ -n "${BASH_VERSION-}" ]; then
        echo bash
    else
        echo sh
    fi
}

tokn_on() {
    _tokn_block=$(command "${TOKN_BIN:-tokn}" proxy env --shell "$(_tokn_shell)" "$@") || {
        _tokn_rc=$?
        unset _tokn_block
        return "$_tokn_rc"
    }
    eval "$_tokn_block"
    unset _tokn_block
}

tokn_off() {
    _tokn_block=$(command "${TOKN_BIN:-tokn}" proxy env --unset --shell "$(_tokn_shell)") || {
        _tokn_rc=$?
        unset _tokn_block
        return "$_tokn_rc"
    }
    eval "$_tokn_block"
    unset _tokn_block
}
