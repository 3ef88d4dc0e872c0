"""The device-code prompt: rich output in Jupyter (an ``IPython.display`` object with a
link and the code), plain text everywhere else."""

from __future__ import annotations

import html
from typing import Any, Callable, Optional

__all__ = ["DeviceCodePrompt", "show_prompt"]


class DeviceCodePrompt:
    """What a person must do to sign in: open ``verification_uri`` and enter
    ``user_code``. Renders as HTML in Jupyter (``_repr_html_``) and as Entra's own
    message in text (``str``)."""

    def __init__(self, verification_uri: str, user_code: str, message: str = ""):
        self.verification_uri, self.user_code = verification_uri, user_code
        self.message = message or f"To sign in, open {verification_uri} and enter the code {user_code} to authenticate."

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"DeviceCodePrompt(verification_uri={self.verification_uri!r}, user_code={self.user_code!r})"

    def _repr_html_(self) -> str:
        uri, code = html.escape(self.verification_uri, quote=True), html.escape(self.user_code)
        return (
            '<div class="entraflow-device-code">'
            f'<p>To sign in, open <a href="{uri}" target="_blank" rel="noopener">{uri}</a> and enter the code</p>'
            f'<p style="font-size:1.6em;font-family:monospace;letter-spacing:0.15em"><b>{code}</b></p>'
            "</div>"
        )

    def _repr_markdown_(self) -> str:
        return f"To sign in, open [{self.verification_uri}]({self.verification_uri}) and enter the code **`{self.user_code}`**"


def _notebook_display() -> Optional[Callable[[Any], None]]:
    """IPython's ``display`` when running under an IPython kernel or shell, else None."""
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:
        return None
    return display if get_ipython() is not None else None


def show_prompt(verification_uri: str, user_code: str, message: str) -> None:
    """The default ``prompt_callback``: displayed in a notebook, printed elsewhere."""
    prompt = DeviceCodePrompt(verification_uri, user_code, message)
    display = _notebook_display()
    if display is not None:
        display(prompt)
    else:
        print(prompt, flush=True)
