"""Schema-constrained tool calls: moved to :mod:`hermes_fed.serving.constrained`.

``hermes-fed model serve`` decodes required tool calls with it, and the simulator's agent
does the same; the core library cannot import the simulator, so the module lives in
``hermes_fed/serving`` and this one keeps the simulator's import path.
"""

from hermes_fed.serving.constrained import (
    LITERAL,
    NUMBER,
    STRING,
    Segment,
    TokenClasses,
    call_program,
    fits_tokenizer,
    generate_calls,
    token_classes,
    tool_key,
)

__all__ = ["LITERAL", "NUMBER", "STRING", "Segment", "TokenClasses", "call_program",
           "fits_tokenizer", "generate_calls", "token_classes", "tool_key"]
