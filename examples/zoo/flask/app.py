"""A recording Flask app for tok's framework zoo.

Every request, whatever its method and path, is answered with JSON holding
everything Flask and Werkzeug parsed from it: the body read as JSON whatever
its Content-Type (get_json(force=True, silent=True), as many apps do), the
form, multipart parts (text fields and file contents), the query, headers,
cookies, path and method, and the body parsed as XML when it starts with
'<' (ElementTree, as apps that sniff XML do). The zoo test searches the answer for card numbers.

    PORT=5001 python3 app.py      # listens on 127.0.0.1 only
"""

import os
import sys
import xml.etree.ElementTree as ET

from flask import Flask, jsonify, request

app = Flask(__name__)
app.config["MAX_CONTENT_LENGTH"] = 16 << 20

@app.after_request
def mark(resp):
    # Tells the zoo test the app answered (not tok, nor the server below it).
    resp.headers["X-Zoo-App"] = "flask"
    return resp


METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def read_xml(body):
    """Parses a body that starts with '<' (after a BOM and white space) as
    an app that sniffs XML would, with ElementTree (expat: character
    references decoded, a DTD's internal entities expanded, comments dropped
    so the text around them joins), and reports every element's tag,
    attributes, text, tail and itertext() joined. None if it does not parse."""
    text = body.decode("utf-8", "replace").lstrip("\ufeff \t\r\n")
    if not text.startswith("<"):
        return None
    try:
        root = ET.fromstring(text)
    except ET.ParseError:
        return None
    return [{"tag": e.tag, "attrib": e.attrib, "text": e.text, "tail": e.tail,
             "itertext": "".join(e.itertext())} for e in root.iter()]


def multi(md):
    return {k: md.getlist(k) for k in md.keys()}


@app.route("/", defaults={"path": ""}, methods=METHODS)
@app.route("/<path:path>", methods=METHODS)
def record(path):
    # Read the body as JSON first: Werkzeug caches it, so the form and
    # multipart parsers below still see it (the other order would leave
    # get_json an empty stream).
    body_json = request.get_json(force=True, silent=True)
    files = {}
    for name, storages in request.files.lists():
        files[name] = [
            {"filename": f.filename, "content_type": f.content_type,
             "content": f.read().decode("utf-8", "replace")}
            for f in storages
        ]
    return jsonify(
        framework="flask",
        method=request.method,
        path=request.path,
        route_path=path,
        full_path=request.full_path,
        query=multi(request.args),
        json=body_json,
        xml=read_xml(request.get_data(cache=True)),
        form=multi(request.form),
        files=files,
        headers=dict(request.headers.items()),
        cookies=request.cookies.to_dict(flat=False),
        referrer=request.referrer,
    )


if __name__ == "__main__":
    port = int(sys.argv[1] if len(sys.argv) > 1 else os.environ.get("PORT", "5001"))
    app.run(host="127.0.0.1", port=port, threaded=True)
