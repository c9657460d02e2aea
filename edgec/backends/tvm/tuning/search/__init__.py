"""`edgec tune`: the kernels to tune (`tasks`), their rules-only times (`baseline`), builder and runner
(`workers`), MetaSchedule's search (`tuner`); writes the database through `..database`."""
