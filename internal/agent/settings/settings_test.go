package settings

import "testing"

func TestSettings(t *testing.T) {
	env := map[string]string{"A": "1"}
	s := New(Values{Env: env})
	env["A"] = "changed"
	if v := s.Get(); v.Env["A"] != "1" || v.DefaultUser != DefaultUser {
		t.Errorf("New did not copy or default: %+v", v)
	}
	if !s.CheckToken("") || !s.CheckToken("anything") || s.HasToken() {
		t.Error("no token must accept everything")
	}
	tok, user, wd := "t", "root", "/w"
	s.Apply(Update{Env: map[string]string{"B": "2"}, AccessToken: &tok, DefaultUser: &user, DefaultWorkdir: &wd})
	v := s.Get()
	if v.Env["A"] != "1" || v.Env["B"] != "2" || v.AccessToken != "t" || v.DefaultUser != "root" || v.DefaultWorkdir != "/w" {
		t.Errorf("after Apply: %+v", v)
	}
	if !s.CheckToken("t") || s.CheckToken("") || s.CheckToken("u") {
		t.Error("token check")
	}
	v.Env["A"] = "mutated"
	if s.Get().Env["A"] != "1" {
		t.Error("Get returned shared env")
	}
}
