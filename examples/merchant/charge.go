package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// egressKeyHeader carries the egress key to tok (proxy.EgressKeyHeader;
// the demo app depends on nothing of tok's but its wire protocol).
const egressKeyHeader = "X-Tok-Egress-Key"

// charge pays for an order through tok's egress listener: it sends the
// tokens the app received at checkout to the provider's /v1/charges, and
// tok swaps the card number and security code back in on the way out. The
// provider's answer (or tok's refusal) is recorded on the order.
func (a *app) charge(w http.ResponseWriter, r *http.Request) {
	if a.egress == "" {
		writeError(w, http.StatusServiceUnavailable, "no payment provider: start the app with -egress (tok's egress URL)")
		return
	}
	id := r.PathValue("id")
	a.mu.Lock()
	o, ok := a.find(id)
	var snapshot order
	if ok {
		snapshot = *o
		if !o.charging && (o.Charge == nil || !o.Charge.Paid) {
			o.charging = true
		}
	}
	a.mu.Unlock()
	switch {
	case !ok:
		writeError(w, http.StatusNotFound, "no such order")
		return
	case snapshot.charging:
		writeError(w, http.StatusConflict, "a charge of this order is in progress")
		return
	case snapshot.Charge != nil && snapshot.Charge.Paid:
		writeError(w, http.StatusConflict, "the order is paid already")
		return
	}

	rec, err := a.sendCharge(r, snapshot)

	a.mu.Lock()
	o, ok = a.find(id)
	if ok {
		o.charging = false
		if err == nil {
			o.Charge = rec
			snapshot = *o
		}
	}
	a.mu.Unlock()
	if err != nil {
		writeError(w, http.StatusBadGateway, "cannot reach tok's egress listener: "+err.Error())
		return
	}
	if !ok { // forgotten meanwhile, beyond maxOrders
		snapshot.Charge = rec
	}
	status := http.StatusBadGateway
	switch {
	case rec.Paid:
		status = http.StatusOK
	case rec.HTTPStatus == http.StatusPaymentRequired:
		status = http.StatusPaymentRequired
	}
	writeJSON(w, status, snapshot)
}

// sendCharge posts the order's charge to the egress listener and returns
// the answer. An error means no answer came.
func (a *app) sendCharge(r *http.Request, o order) (*chargeRecord, error) {
	form := url.Values{}
	form.Set("amount", strconv.FormatInt(o.Amount, 10))
	form.Set("currency", o.Currency)
	form.Set("card[number]", o.Card.Number)
	if o.Card.CVC != "" {
		form.Set("card[cvc]", o.Card.CVC)
	}
	form.Set("metadata[order_id]", o.ID)
	req, err := http.NewRequestWithContext(r.Context(), http.MethodPost, a.egress+"/v1/charges", strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if a.egressKey != "" {
		req.Header.Set(egressKeyHeader, a.egressKey)
	}
	resp, err := a.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL is the app's own config; say what went wrong
		}
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return nil, fmt.Errorf("read the answer: %w", err)
	}
	if len(body) > maxBody {
		return nil, errors.New("the answer is too large")
	}
	rec := &chargeRecord{At: a.now().UTC(), HTTPStatus: resp.StatusCode, Response: asJSON(body)}
	if resp.StatusCode == http.StatusOK {
		var ch struct {
			Status string `json:"status"`
		}
		rec.Paid = json.Unmarshal(body, &ch) == nil && ch.Status == "succeeded"
	}
	return rec, nil
}

// asJSON returns body if it is JSON, and body as a JSON string otherwise.
func asJSON(body []byte) json.RawMessage {
	body = bytes.TrimSpace(body)
	if json.Valid(body) && len(body) > 0 {
		return json.RawMessage(body)
	}
	s, _ := json.Marshal(string(body))
	return s
}
