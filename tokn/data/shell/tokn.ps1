# tokn shell integration for PowerShell (pwsh 7+ and Windows PowerShell 5.1).
#
#   . /path/to/tokn.ps1    # in $PROFILE (`tokn paths shell-pwsh` prints the path)
#   Enable-Tokn     # (alias tokn_on)  this session now goes through the tokn proxy
#   Disable-Tokn    # (alias tokn_off) and no longer does
#
# $Env:TOKN_BIN overrides the command (default: tokn).

function Get-ToknBin {
    if ($Env:TOKN_BIN) { $Env:TOKN_BIN } else { 'tokn' }
}

function Enable-Tokn {
    $block = & (Get-ToknBin) proxy env --shell pwsh @args | Out-String
    if ($LASTEXITCODE -ne 0) { return }
    Invoke-Expression $block
}

function Disable-Tokn {
    $block = & (Get-ToknBin) proxy env --unset --shell pwsh | Out-String
    if ($LASTEXITCODE -ne 0) { return }
    Invoke-Expression $block
}

Set-Alias -Name tokn_on -Value Enable-Tokn
Set-Alias -Name tokn_off -Value Disable-Tokn
