# tokn shell integration for fish.
#
#   source /path/to/tokn.fish    # in ~/.config/fish/config.fish
#                                # (`tokn paths shell-fish` prints the path)
#   tokn_on      # this shell now goes through the tokn proxy
#   tokn_off     # and no longer does
#
# TOKN_BIN overrides the command (default: tokn).

function __tokn_bin
    if set -q TOKN_BIN; and test -n "$TOKN_BIN"
        echo $TOKN_BIN
    else
        echo tokn
    end
end

function tokn_on --description 'Route this shell through the tokn proxy'
    set -l block (command (__tokn_bin) proxy env --shell fish $argv)
    or return $status
    string join \n -- $block | source
end

function tokn_off --description 'Stop routing this shell through the tokn proxy'
    set -l block (command (__tokn_bin) proxy env --unset --shell fish)
    or return $status
    string join \n -- $block | source
end
