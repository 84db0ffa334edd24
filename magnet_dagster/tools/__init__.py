"""Tool formats -> FunctionSpec, validation, the call model and matcher, executors."""
