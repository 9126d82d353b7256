"""The `transformer-mt` command line: `main` dispatches each subcommand to the module of this
package named after it (`train` runs fit/validate/test/predict through LightningCLI); `options`
holds the argument helpers several commands share. The library never imports from here."""
