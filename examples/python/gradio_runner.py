"""A Gradio code runner: type Python in the browser, run it in a fresh
sandbox, see its output, its value and its charts.

    pip install gradio
    python examples/python/gradio_runner.py     # then open http://127.0.0.1:7860
"""

import base64
import io

import gradio as gr
from e2b_code_interpreter import Sandbox
from PIL import Image

EXAMPLE = """import matplotlib.pyplot as plt
plt.plot([1, 4, 9, 16])
plt.show()
print("plotted")"""


def run(code):
    with Sandbox.create() as sandbox:
        execution = sandbox.run_code(code)
    parts = []
    if execution.logs.stdout:
        parts.append("".join(execution.logs.stdout))
    if execution.logs.stderr:
        parts.append("stderr:\n" + "".join(execution.logs.stderr))
    if execution.text:
        parts.append("result: " + execution.text)
    if execution.error:
        parts.append(f"{execution.error.name}: {execution.error.value}")
    chart = None
    for result in execution.results:
        if result.png:
            chart = Image.open(io.BytesIO(base64.b64decode(result.png)))
    return "\n".join(parts) or "(no output)", chart


with gr.Blocks(title="Sandboxed code runner") as demo:
    gr.Markdown("# Run Python in a sandbox")
    code = gr.Textbox(value=EXAMPLE, lines=8, label="Python code", elem_id="code")
    button = gr.Button("Run", variant="primary", elem_id="run")
    output = gr.Textbox(label="Output", lines=6, elem_id="output")
    chart = gr.Image(label="Chart", type="pil", elem_id="chart")
    button.click(run, inputs=code, outputs=[output, chart])

if __name__ == "__main__":
    demo.launch()
